"""Stage-refined context sampler (SCS): keep, stage by stage, what is most relevant to the other modality.

Selection is by rank, not by gather: a position is kept when its rank among the still-kept positions is
below ceil(ratio * number still kept). Everything stays a [B, N] mask, so the graph has no data-dependent
shapes and traces to ONNX with dynamic sequence length; pruned positions are masked out of the
generator's attention. The hard selection passes no gradient, so the kept features are multiplied by a
straight-through gate 1 + sigmoid(score) - stopgrad(sigmoid(score)): value 1, gradient of the score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from training.model.attention import MASK_VALUE
from training.model.config import SamplerConfig


def keep_top_fraction(scores: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep the ceil(ratio * mask.sum()) highest-scoring True positions of each row (ties: lower index)."""
    scores = scores.masked_fill(~mask, MASK_VALUE * 10)
    higher = scores.unsqueeze(1) > scores.unsqueeze(2)  # [B, i, j]: j outranks i
    positions = torch.arange(scores.shape[1], device=scores.device)
    tied_before = (scores.unsqueeze(1) == scores.unsqueeze(2)) & (positions[None, :] < positions[:, None])
    rank = (higher | tied_before).sum(dim=2)
    budget = torch.ceil(mask.sum(dim=1, keepdim=True).to(scores.dtype) * ratio)
    return mask & (rank.to(scores.dtype) < budget)


def kept_count(count: int, ratios: list[float]) -> int:
    """How many of `count` positions survive all stages (the arithmetic keep_top_fraction does)."""
    for ratio in ratios:
        count = math.ceil(count * ratio)
    return count


class RelevanceScorer(nn.Module):
    """score_i = logsumexp_j q(x_i) . k(c_j) / sqrt(d): high when x_i matches at least one context item."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        logits = torch.matmul(
            self.query(self.norm_x(x)), self.key(self.norm_context(context)).transpose(1, 2)
        )
        logits = (logits * self.scale).masked_fill(~context_mask[:, None, :], MASK_VALUE)
        return torch.logsumexp(logits, dim=-1)


@dataclass
class SampledSet:
    """Per-stage keep masks of one modality and the straight-through gate for its kept features."""

    keep: list[torch.Tensor] = field(default_factory=list)  # one bool [B, N] per stage
    scores: list[torch.Tensor] = field(default_factory=list)  # relevance logits [B, N] per stage
    gate: torch.Tensor | None = None  # [B, N], value 1

    def final(self, initial: torch.Tensor) -> torch.Tensor:
        return self.keep[-1] if self.keep else initial

    def apply_gate(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.gate is None else x * self.gate.unsqueeze(-1)


class ContextSampler(nn.Module):
    """One modality's sampler: a relevance scorer per stage and the stage keep ratios."""

    def __init__(self, dim: int, keep_ratios: list[float]) -> None:
        super().__init__()
        self.keep_ratios = list(keep_ratios)
        self.scorers = nn.ModuleList(RelevanceScorer(dim) for _ in keep_ratios)

    def stage(
        self,
        index: int,
        x: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        sampled: SampledSet,
    ) -> torch.Tensor:
        scores = self.scorers[index](x, context, context_mask)
        keep = keep_top_fraction(scores.detach(), mask, self.keep_ratios[index])
        soft = torch.sigmoid(scores)
        step_gate = 1.0 + soft - soft.detach()
        sampled.gate = step_gate if sampled.gate is None else sampled.gate * step_gate
        sampled.keep.append(keep)
        sampled.scores.append(scores)
        return keep


VisualContext = Callable[[SampledSet, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class StageRefinedSampler(nn.Module):
    """Both modalities' samplers, refined in turn: stage s scores text against the visual context of the
    tokens kept at s-1, and patches against the text tokens kept at s-1."""

    def __init__(self, dim: int, config: SamplerConfig) -> None:
        super().__init__()
        self.stages = config.stages
        self.text = ContextSampler(dim, config.text_keep)
        self.patch = ContextSampler(dim, config.patch_keep)

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        visual_context: VisualContext,
        patches: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
    ) -> tuple[SampledSet, SampledSet | None]:
        """`visual_context(sampled_text, keep)` gives the visual features to score text against (the
        generator's pseudo patches of the currently kept tokens: the same at training and inference)."""
        text_set = SampledSet()
        patch_set = SampledSet() if patches is not None else None
        text_keep, patch_keep = text_mask, patch_mask
        for stage in range(self.stages):
            context, context_mask = visual_context(text_set, text_keep)
            new_text_keep = self.text.stage(stage, text, text_keep, context, context_mask, text_set)
            if patches is not None and patch_mask is not None and patch_set is not None:
                patch_keep = self.patch.stage(stage, patches, patch_keep, text, text_keep, patch_set)  # type: ignore[arg-type]
            text_keep = new_text_keep
        return text_set, patch_set
