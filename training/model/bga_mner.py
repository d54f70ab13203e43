"""BGA-MNER: text encoder + stage-refined context samplers + multi-level cross-modal generator + fusion + CRF.

Training sees (text, image) pairs when images exist; inference runs the text branch only, with the
pseudo visual features that text2image generates in place of the image (`emissions_text_only`).
`variant="text_crf"` builds only the encoder, casing embedding, classifier and CRF: the text baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.model.batch import Batch
from training.model.config import ModelConfig
from training.model.crf import CRF
from training.model.fusion import GatedCrossModalFusion
from training.model.generator import CrossModalGenerator
from training.model.image_encoder import ImageEncoder
from training.model.losses import info_nce, relevance_pool, set_reconstruction
from training.model.sampler import SampledSet, StageRefinedSampler
from training.model.text_encoder import TextEncoder, TextFeatures

LOSS_NAMES = ("ner", "recon_t2i", "recon_i2t", "cycle", "align")


@dataclass
class ModelOutput:
    loss: torch.Tensor  # weighted sum, what the optimiser minimises
    losses: dict[str, torch.Tensor]  # each weighted component (detached), for logging
    word_emissions: torch.Tensor  # [B, W, L], text-only path


@dataclass
class Generated:
    """Result of sampling and text2image generation for one batch."""

    pseudo_visual: torch.Tensor  # [B, Q, D]
    text_keep: torch.Tensor  # [B, S] tokens kept after the last stage
    patch_keep: torch.Tensor | None  # [B, P]
    patch_set: SampledSet | None
    text_set: SampledSet


def gather_words(emissions: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """Subword emissions [B, S, L] -> first-subword emissions per word [B, W, L] (-1 indices give row 0)."""
    index = word_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, emissions.shape[-1])
    return torch.gather(emissions, 1, index)


def casing_vocabulary_check(config: ModelConfig) -> None:
    """The casing embedding must cover every class the shared preprocessing can emit."""
    try:
        from bga_mner.preprocessing.casing import NUM_CASING_CLASSES
    except ImportError:
        return
    if int(NUM_CASING_CLASSES) > config.num_casing_classes:
        raise ValueError(
            f"num_casing_classes={config.num_casing_classes} < NUM_CASING_CLASSES={NUM_CASING_CLASSES}"
        )


class BGAMNER(nn.Module):
    def __init__(
        self, config: ModelConfig, num_labels: int, backbone_config: dict[str, Any] | None = None
    ) -> None:
        """``backbone_config`` (the text encoder's Hugging Face config) builds the encoder without its
        pretrained folder, for loading a checkpoint on a machine where that path does not exist."""
        super().__init__()
        casing_vocabulary_check(config)
        self.config = config
        self.num_labels = num_labels
        self.is_bga = config.variant == "bga"
        self.text_encoder = TextEncoder(
            config.text_encoder,
            hidden=config.hidden,
            num_casing_classes=config.num_casing_classes,
            casing_dim=config.casing_dim,
            levels=config.generator.levels if self.is_bga else [],
            dropout=config.dropout,
            backbone_config=backbone_config,
            num_layers=config.text_layers,
        )
        if config.freeze_text_encoder:
            self.text_encoder.backbone.requires_grad_(False)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, num_labels)
        self.crf = CRF(num_labels)
        if self.is_bga:
            self.sampler = StageRefinedSampler(config.hidden, config.sampler)
            self.generator = CrossModalGenerator(config.hidden, config.generator, config.dropout)
            self.fusion = GatedCrossModalFusion(config.hidden, config.fusion_heads, config.dropout)
            self.image_encoder = ImageEncoder(config.image_encoder, freeze=config.freeze_image_encoder)
            self.image_projection = nn.Sequential(
                nn.LayerNorm(self.image_encoder.out_dim), nn.Linear(self.image_encoder.out_dim, config.hidden)
            )

    # ----------------------------------------------------------------------------------------- features
    def _text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> TextFeatures:
        return self.text_encoder(input_ids, attention_mask, casing_ids, with_levels=self.is_bga)  # type: ignore[no-any-return]

    def _patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_projection(self.image_encoder(pixel_values))  # type: ignore[no-any-return]

    @staticmethod
    def _content_mask(attention_mask: torch.Tensor, casing_ids: torch.Tensor) -> torch.Tensor:
        """Subwords of real words: casing id 0 marks [CLS]/[SEP]/padding, which carry no entity content."""
        return attention_mask.bool() & (casing_ids > 0)

    def _generate(
        self,
        text: TextFeatures,
        content_mask: torch.Tensor,
        patches: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
    ) -> Generated:
        def pseudo_visual(sampled: SampledSet, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            visual = self.generator.text2image([sampled.apply_gate(level) for level in text.levels], keep)
            return visual, torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)

        text_set, patch_set = self.sampler(text.tokens, content_mask, pseudo_visual, patches, patch_mask)
        text_keep = text_set.final(content_mask)
        visual, _ = pseudo_visual(text_set, text_keep)
        patch_keep = (
            patch_set.final(patch_mask) if patch_set is not None and patch_mask is not None else patch_mask
        )
        return Generated(visual, text_keep, patch_keep, patch_set, text_set)

    def _emit(self, tokens: torch.Tensor, visual: torch.Tensor, visual_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.fusion(tokens, visual, visual_mask)))  # type: ignore[no-any-return]

    # ---------------------------------------------------------------------------------------- inference
    def pseudo_visual_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        """The text2image output [B, Q, D] that stands in for the image at text-only inference."""
        if not self.is_bga:
            raise ValueError("the text_crf variant has no generator")
        text = self._text(input_ids, attention_mask, casing_ids)
        return self._generate(text, self._content_mask(attention_mask, casing_ids)).pseudo_visual

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected real patch features [B, P, D]: the space text2image is trained to reach."""
        return self._patches(pixel_values)

    def emissions_text_only(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        """Subword emissions [B, S, L] from text alone (generated visual features): what export traces."""
        text = self._text(input_ids, attention_mask, casing_ids)
        if not self.is_bga:
            return self.classifier(self.dropout(text.tokens))  # type: ignore[no-any-return]
        generated = self._generate(text, self._content_mask(attention_mask, casing_ids))
        ones = torch.ones(generated.pseudo_visual.shape[:2], dtype=torch.bool, device=input_ids.device)
        return self._emit(text.tokens, generated.pseudo_visual, ones)

    def emissions_with_image(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        casing_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Image-aware baseline: rows with a real image read its kept patches, the others the pseudo ones."""
        if not self.is_bga:
            return self.emissions_text_only(input_ids, attention_mask, casing_ids)
        text = self._text(input_ids, attention_mask, casing_ids)
        patches = self._patches(pixel_values)
        patch_mask = image_mask.bool()[:, None].expand(-1, patches.shape[1])
        generated = self._generate(text, self._content_mask(attention_mask, casing_ids), patches, patch_mask)
        assert generated.patch_keep is not None
        pseudo_mask = (~image_mask.bool())[:, None].expand(-1, generated.pseudo_visual.shape[1])
        visual = torch.cat([generated.pseudo_visual, patches], dim=1)
        return self._emit(text.tokens, visual, torch.cat([pseudo_mask, generated.patch_keep], dim=1))

    @torch.no_grad()
    def decode(self, batch: Batch, use_image: bool = False) -> list[list[int]]:
        """Viterbi label ids for the `word_mask` words of each row (text-only unless use_image)."""
        if use_image and batch.has_images:
            assert batch.pixel_values is not None and batch.image_mask is not None
            emissions = self.emissions_with_image(
                batch.input_ids, batch.attention_mask, batch.casing_ids, batch.pixel_values, batch.image_mask
            )
        else:
            emissions = self.emissions_text_only(batch.input_ids, batch.attention_mask, batch.casing_ids)
        return self.crf.viterbi(gather_words(emissions, batch.word_index), batch.word_mask)

    # ----------------------------------------------------------------------------------------- training
    def forward(self, batch: Batch) -> ModelOutput:
        if batch.labels is None:
            raise ValueError("forward() computes the training loss and needs batch.labels; use decode()")
        weights = self.config.loss
        text = self._text(batch.input_ids, batch.attention_mask, batch.casing_ids)
        zero = text.tokens.new_zeros(())
        losses = dict.fromkeys(LOSS_NAMES, zero)
        if not self.is_bga:
            word_emissions = gather_words(self.classifier(self.dropout(text.tokens)), batch.word_index)
            losses["ner"] = weights.ner * self.crf.neg_log_likelihood(
                word_emissions, batch.labels, batch.word_mask
            )
            return self._output(losses, word_emissions)

        content_mask = self._content_mask(batch.attention_mask, batch.casing_ids)
        patches = patch_mask = image_rows = None
        if batch.has_images:  # the image encoder runs only for batches with at least one real image
            assert batch.pixel_values is not None and batch.image_mask is not None
            image_rows = batch.image_mask.bool()
            patches = self._patches(batch.pixel_values)
            patch_mask = image_rows[:, None].expand(-1, patches.shape[1])
        generated = self._generate(text, content_mask, patches, patch_mask)
        ones = torch.ones(generated.pseudo_visual.shape[:2], dtype=torch.bool, device=text.tokens.device)
        word_emissions = gather_words(
            self._emit(text.tokens, generated.pseudo_visual, ones), batch.word_index
        )
        ner = self.crf.neg_log_likelihood(word_emissions, batch.labels, batch.word_mask)
        text_target = text.tokens.detach()
        cycles = []
        if weights.cycle > 0:  # text -> pseudo image -> text: the only generator signal without images
            back = self.generator.image2text(generated.pseudo_visual, ones)
            cycles.append(set_reconstruction(back, text_target, generated.text_keep, content_mask.any(dim=1)))
        if patches is not None and image_rows is not None and generated.patch_keep is not None:
            real_keep = generated.patch_keep
            real_emissions = gather_words(self._emit(text.tokens, patches, real_keep), batch.word_index)
            real_nll = self.crf.neg_log_likelihood(
                real_emissions, batch.labels, batch.word_mask, reduction="none"
            )
            ner = ner + real_nll[image_rows].mean()
            image_target = patches.detach()
            if weights.recon_t2i > 0:
                losses["recon_t2i"] = weights.recon_t2i * set_reconstruction(
                    generated.pseudo_visual, image_target, real_keep, image_rows
                )
            if weights.recon_i2t > 0 or weights.cycle > 0:
                assert generated.patch_set is not None
                pseudo_text = self.generator.image2text(generated.patch_set.apply_gate(patches), real_keep)
                if weights.recon_i2t > 0:
                    losses["recon_i2t"] = weights.recon_i2t * set_reconstruction(
                        pseudo_text, text_target, generated.text_keep, image_rows
                    )
                if weights.cycle > 0:  # image -> pseudo text -> image
                    text_slots = torch.ones(
                        pseudo_text.shape[:2], dtype=torch.bool, device=pseudo_text.device
                    )
                    again = self.generator.text2image([pseudo_text], text_slots)
                    cycles.append(set_reconstruction(again, image_target, real_keep, image_rows))
            if weights.align > 0:
                text_scores = generated.text_set.scores[-1] if generated.text_set.scores else None
                patch_scores = generated.patch_set.scores[-1] if generated.patch_set is not None else None
                losses["align"] = weights.align * info_nce(
                    relevance_pool(text.tokens, text_scores, generated.text_keep),
                    relevance_pool(patches, patch_scores, real_keep),
                    image_rows,
                    weights.align_temperature,
                )
        if cycles:
            losses["cycle"] = weights.cycle * torch.stack(cycles).mean()
        losses["ner"] = weights.ner * ner
        return self._output(losses, word_emissions)

    @staticmethod
    def _output(losses: dict[str, torch.Tensor], word_emissions: torch.Tensor) -> ModelOutput:
        total = torch.stack(list(losses.values())).sum()
        return ModelOutput(total, {name: value.detach() for name, value in losses.items()}, word_emissions)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split for separate learning rates: pretrained encoders, new heads, CRF."""
        encoder_ids = {id(p) for p in self.text_encoder.backbone.parameters()}
        if self.is_bga:
            encoder_ids |= {id(p) for p in self.image_encoder.parameters()}
        crf_ids = {id(p) for p in self.crf.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"encoder": [], "heads": [], "crf": []}
        for parameter in self.parameters():
            if not parameter.requires_grad:
                continue
            group = (
                "encoder" if id(parameter) in encoder_ids else "crf" if id(parameter) in crf_ids else "heads"
            )
            groups[group].append(parameter)
        return groups


class TextOnlyInference(nn.Module):
    """forward(input_ids, attention_mask, casing_ids) -> emissions [B, S, L]: the module export traces."""

    def __init__(self, model: BGAMNER) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model.emissions_text_only(input_ids, attention_mask, casing_ids)
