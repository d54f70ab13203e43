"""The lean inference graph: BGA-MNER's text-only path rebuilt from the trained weights for serving.

``BGAMNER.emissions_text_only`` is written for training, and traced as it is it does work that
inference does not need. Built here from the same weights (``training/model`` is not touched):

- the straight-through gate ``1 + sigmoid(s) - stopgrad(sigmoid(s))`` is exactly the identity in value,
  so it is dropped (the training graph computes it, and in fp16 it is not even exactly 1);
- every sampler stage runs text2image over the same level features with only the keep mask changing,
  so the generator's memory projections (LayerNorm, key, value) are computed once and shared by all
  passes instead of once per pass;
- the first decoder layer's queries (learned queries + level embedding, normed and projected) and the
  softmax weights that mix the levels are constants, precomputed once; softmax scales are folded into
  the query weights; the casing embedding is folded through the projection into one table;
- masks are finite (fp16-safe), the sampler's log-sum-exp subtracts its maximum explicitly, and the
  rank-based selection uses no sentinel values; scorers and ranking run in fp32 even under autocast,
  because about a sixth of the rows have a gap under one fp16 step between the last kept token and
  the first dropped one.

The result computes the same function up to float reassociation: ``tests/export/test_lean.py`` and
the export's own parity check compare it with the training graph through the serving tagger.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from training.export.lean_encoder import (
    LeanBertEncoder,
    UnsupportedModel,
    _copy_linear,
    _copy_norm,
    frozen_embedding,
)

# ONNX node-name prefixes of the sampler's scorers and rank selection (the exporter names nodes by module
# path under the export wrapper's ``model``): the TensorRT build keeps these layers in fp32.
FP32_NODE_PREFIXES = ("/model/scorers.",)
# What the training graph puts on masked cross-attention scores (training.model.attention.MASK_VALUE):
# finite and inside fp16's range.
ATTENTION_MASK_VALUE = -1.0e4


def fp32_region(device: torch.device) -> Any:
    """A context in which autocast is off: what runs inside stays in the dtype of its inputs (fp32)."""
    return torch.autocast(device_type=device.type, enabled=False)


def logsumexp_stable(logits: torch.Tensor) -> torch.Tensor:
    """log(sum(exp(x))) over the last axis with the maximum subtracted explicitly.

    ``torch.logsumexp`` exports as ``ReduceLogSumExp``, which TensorRT's parser lowers without the
    max subtraction (it overflows once a logit exceeds ~11 in fp16); this form exports as plain
    ReduceMax/Sub/Exp/ReduceSum/Log ops that stay finite in any precision.
    """
    peak = logits.amax(dim=-1, keepdim=True)
    return peak.squeeze(-1) + torch.log(torch.exp(logits - peak).sum(dim=-1))


def keep_top_fraction(scores: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """The training sampler's selection (ceil(ratio * kept) highest scores, ties to the lower index)
    computed without the -1e5 sentinel it writes into masked scores (beyond fp16's range): a masked
    position simply never counts as outranking another."""
    left = scores.unsqueeze(2)  # [B, i, 1]
    right = scores.unsqueeze(1)  # [B, 1, j]
    positions = torch.arange(scores.shape[1], device=scores.device)
    before = positions[None, :] < positions[:, None]  # [i, j]: j comes before i
    outranks = ((right > left) | ((right == left) & before)) & mask.unsqueeze(1)
    rank = outranks.sum(dim=2)
    budget = torch.ceil(mask.sum(dim=1, keepdim=True).to(scores.dtype) * ratio)
    return mask & (rank.to(scores.dtype) < budget)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class LeanCrossAttention(nn.Module):
    """``training.model.attention.CrossAttention`` with the memory projection split out (so it can be
    computed once and reused) and the score scale folded into the query weights."""

    def __init__(self, attention: Any) -> None:
        super().__init__()
        self.heads = int(attention.heads)
        scale = 1.0 / math.sqrt(int(attention.head_dim))
        self.query = _copy_linear(attention.query)
        with torch.no_grad():
            self.query.weight.mul_(scale)
            self.query.bias.mul_(scale)
        self.key = _copy_linear(attention.key)
        self.value = _copy_linear(attention.value)
        self.out = _copy_linear(attention.out)

    def memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, N, hd] of a (normed) memory."""
        return _heads(self.key(memory), self.heads), _heads(self.value(memory), self.heads)

    def attend(
        self, query_heads: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Scaled query heads [B or 1, H, Q, hd] over keys/values; ``mask`` [B, N] (None: all kept)."""
        scores = torch.matmul(query_heads, keys.transpose(-1, -2))
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], ATTENTION_MASK_VALUE)
        mixed = _merge(torch.matmul(torch.softmax(scores, dim=-1), values))
        projected: torch.Tensor = self.out(mixed)
        if mask is not None:  # a row whose memory is entirely masked reads exactly zero (as in training)
            projected = projected * mask.any(dim=1).to(projected.dtype)[:, None, None]
        return projected


class LeanFeedForward(nn.Module):
    def __init__(self, feed_forward: Any) -> None:
        super().__init__()
        first, _, _, second = feed_forward.net
        self.first = _copy_linear(first)
        self.second = _copy_linear(second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.second(nn.functional.gelu(self.first(x)))
        return out


class LeanDecoderLayer(nn.Module):
    """``CrossAttentionLayer`` for inference: memory keys/values computed by ``memory`` once per level."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self.norm_query = _copy_norm(layer.norm_query)
        self.norm_memory = _copy_norm(layer.norm_memory)
        self.attention = LeanCrossAttention(layer.attention)
        self.norm_ffn = _copy_norm(layer.norm_ffn)
        self.ffn = LeanFeedForward(layer.ffn)

    def memory(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.memory(self.norm_memory(source))

    def query_heads(self, query: torch.Tensor) -> torch.Tensor:
        return _heads(self.attention.query(self.norm_query(query)), self.attention.heads)

    def forward(
        self,
        query: torch.Tensor,
        query_heads: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
    ) -> torch.Tensor:
        query = query + self.attention.attend(query_heads, memory[0], memory[1], mask)
        out: torch.Tensor = query + self.ffn(self.norm_ffn(query))
        return out


class LeanText2Image(nn.Module):
    """text2image (``QueryDecoder`` over every level) for a fixed set of level features and a keep mask.

    ``memories`` are computed once per forward; each call with another keep mask reuses them. The first
    layer's queries do not depend on the input, so their projection is a precomputed constant.
    """

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(LeanDecoderLayer(layer) for layer in decoder.layers)
        self.norm = _copy_norm(decoder.norm)
        count = int(decoder.level_embeddings.shape[0])
        with torch.no_grad():
            queries = decoder.queries.detach()[None] + decoder.level_embeddings.detach()[:, None]
            first = self.layers[0]
            assert isinstance(first, LeanDecoderLayer)
            self.register_buffer("level_queries", queries.clone(), persistent=False)  # [L, Q, D]
            self.register_buffer(
                "first_query_heads",
                torch.stack([first.query_heads(q[None])[0] for q in queries]),
                persistent=False,
            )  # [L, H, Q, hd]
            self.register_buffer(
                "level_weights",
                torch.softmax(decoder.level_logits.detach(), dim=0).clone(),
                persistent=False,
            )
        self.levels = count

    def memories(self, sources: list[torch.Tensor]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per level, per layer: the keys and values of that level's features."""
        layers = [cast(LeanDecoderLayer, layer) for layer in self.layers]
        return [[layer.memory(source) for layer in layers] for source in sources]

    def forward(
        self, memories: list[list[tuple[torch.Tensor, torch.Tensor]]], mask: torch.Tensor
    ) -> torch.Tensor:
        level_queries = cast(torch.Tensor, self.level_queries)
        first_heads = cast(torch.Tensor, self.first_query_heads)
        weights = cast(torch.Tensor, self.level_weights)
        mixed: torch.Tensor | None = None
        for level, per_layer in enumerate(memories):
            query = level_queries[level][None]
            heads = first_heads[level][None]
            for index, (layer, memory) in enumerate(zip(self.layers, per_layer, strict=True)):
                if index > 0:
                    heads = cast(LeanDecoderLayer, layer).query_heads(query)
                query = layer(query, heads, memory, mask)
            term = weights[level] * self.norm(query)
            mixed = term if mixed is None else mixed + term
        assert mixed is not None
        return mixed


class LeanScorer(nn.Module):
    """One sampler stage: ``RelevanceScorer`` against the pseudo visual context (every slot valid), with
    a stable log-sum-exp, then the rank selection, all in fp32. Keeping both in this module keeps their
    ONNX nodes under one name prefix (``FP32_NODE_PREFIXES``), which the TensorRT build pins to fp32."""

    def __init__(self, scorer: Any, ratio: float) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.norm_x = _copy_norm(scorer.norm_x)
        self.norm_context = _copy_norm(scorer.norm_context)
        self.query = _copy_linear(scorer.query)
        self.key = _copy_linear(scorer.key)
        self.scale = float(scorer.scale)

    def scores(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Relevance of each token [B, S], fp32 whatever the autocast."""
        with fp32_region(tokens.device):
            queries = self.query(self.norm_x(tokens.float()))
            keys = self.key(self.norm_context(context.float()))
            logits = torch.matmul(queries, keys.transpose(1, 2)) * self.scale
            return logsumexp_stable(logits)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The keep mask after this stage."""
        scores = self.scores(tokens, context)
        with fp32_region(tokens.device):
            return keep_top_fraction(scores, keep, self.ratio)


class LeanFusion(nn.Module):
    """``GatedCrossModalFusion`` over the pseudo visual features (all valid): the gate's concatenation is
    split into two projections, and the all-valid mask needs no masking."""

    def __init__(self, fusion: Any) -> None:
        super().__init__()
        self.norm_text = _copy_norm(fusion.norm_text)
        self.norm_visual = _copy_norm(fusion.norm_visual)
        self.attention = LeanCrossAttention(fusion.attention)
        gate: nn.Linear = fusion.gate
        width = gate.out_features
        self.gate_text = nn.Linear(width, width)
        self.gate_read = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            self.gate_text.weight.copy_(gate.weight[:, :width])
            self.gate_text.bias.copy_(gate.bias)
            self.gate_read.weight.copy_(gate.weight[:, width:])
        self.norm_ffn = _copy_norm(fusion.norm_ffn)
        self.ffn = LeanFeedForward(fusion.ffn)

    def forward(self, tokens: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        keys, values = self.attention.memory(self.norm_visual(visual))
        query_heads = _heads(self.attention.query(self.norm_text(tokens)), self.attention.heads)
        read = self.attention.attend(query_heads, keys, values, None)
        gate = torch.sigmoid(self.gate_text(tokens) + self.gate_read(read))
        fused = tokens + gate * read
        out: torch.Tensor = fused + self.ffn(self.norm_ffn(fused))
        return out


class LeanTextOnly(nn.Module):
    """``forward(input_ids, attention_mask, casing_ids) -> emissions [B, S, L]``: what export traces."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        encoder = model.text_encoder
        self.encoder = LeanBertEncoder(encoder.backbone)
        project_linear, project_norm = encoder.project[0], encoder.project[1]
        width = int(encoder.backbone.config.hidden_size)
        self.project = nn.Linear(width, project_linear.out_features, bias=False)
        with torch.no_grad():
            self.project.weight.copy_(project_linear.weight[:, :width])
            # casing embedding -> projection, folded into one [classes, hidden] table (bias included)
            table = encoder.casing.weight.detach() @ project_linear.weight[:, width:].T + project_linear.bias
        self.casing_table = frozen_embedding(table)
        self.project_norm = _copy_norm(project_norm)
        self.classifier = _copy_linear(model.classifier)
        self.is_bga = bool(model.is_bga)
        self.level_ids = list(encoder.levels) if self.is_bga else []
        self.level_projections = (
            nn.ModuleList(
                nn.Sequential(_copy_linear(p[0]), _copy_norm(p[1])) for p in encoder.level_projections
            )
            if self.is_bga
            else nn.ModuleList()
        )
        self.keep_ratios: list[float] = []
        self.scorers = nn.ModuleList()
        if self.is_bga:
            self.keep_ratios = list(model.sampler.text.keep_ratios)
            self.scorers = nn.ModuleList(
                LeanScorer(s, r) for s, r in zip(model.sampler.text.scorers, self.keep_ratios, strict=True)
            )
            self.text2image = LeanText2Image(model.generator.text2image_decoder)
            if self.text2image.levels != len(self.level_ids):
                raise UnsupportedModel("text2image has another number of levels than the encoder gives")
            self.fusion = LeanFusion(model.fusion)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        states = self.encoder(input_ids, attention_mask)
        tokens = self.project_norm(self.project(states[-1]) + self.casing_table(casing_ids))
        if not self.is_bga:
            plain: torch.Tensor = self.classifier(tokens)
            return plain
        sources = [
            projection(states[level])
            for level, projection in zip(self.level_ids, self.level_projections, strict=True)
        ]
        memories = self.text2image.memories(sources)
        keep = attention_mask.bool() & (casing_ids > 0)  # subwords of real words (as in training)
        for scorer in self.scorers:
            keep = scorer(tokens, self.text2image(memories, keep), keep)
        visual = self.text2image(memories, keep)
        emissions: torch.Tensor = self.classifier(self.fusion(tokens, visual))
        return emissions


def build_lean(module: Any) -> LeanTextOnly:
    """The lean inference module of a trained BGA-MNER (``BGAMNER`` or the ``TextOnlyInference`` export
    wraps it in), in eval mode. Raises :class:`UnsupportedModel` for a model it does not know."""
    model = getattr(module, "model", module)
    for name in ("text_encoder", "classifier", "is_bga"):
        if not hasattr(model, name):
            raise UnsupportedModel(f"{type(model).__name__} has no {name!r}: not a BGA-MNER model")
    try:
        lean = LeanTextOnly(model)
    except (AttributeError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, UnsupportedModel):
            raise
        raise UnsupportedModel(f"cannot rebuild {type(model).__name__} for inference: {error}") from error
    return lean.eval()


__all__ = ["LeanTextOnly", "UnsupportedModel", "build_lean", "keep_top_fraction", "logsumexp_stable"]
