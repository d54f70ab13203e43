from __future__ import annotations

import math

import torch

from training.model.config import SamplerConfig
from training.model.sampler import (
    RelevanceScorer,
    SampledSet,
    StageRefinedSampler,
    keep_top_fraction,
    kept_count,
)


def test_keep_top_fraction_keeps_the_best_of_the_still_kept() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3, 2.0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, True, False], [True, True, True, False, False, False]])
    keep = keep_top_fraction(scores, mask, 0.5)
    # row 0: ceil(0.5 * 5) = 3 best of the valid ones (2.0 is masked); row 1: ceil(1.5) = 2, ties by index
    assert keep.tolist() == [
        [False, True, True, True, False, False],
        [True, True, False, False, False, False],
    ]


def test_stages_keep_the_configured_counts() -> None:
    torch.manual_seed(0)
    config = SamplerConfig(text_keep=[0.75, 0.5, 0.5], patch_keep=[0.5, 0.5, 1.0])
    sampler = StageRefinedSampler(16, config)
    lengths = [20, 13, 7, 1]
    text = torch.randn(4, 20, 16)
    text_mask = torch.arange(20)[None, :] < torch.tensor(lengths)[:, None]
    patches = torch.randn(4, 49, 16)
    patch_mask = torch.ones(4, 49, dtype=torch.bool)
    contexts: list[torch.Tensor] = []

    def visual_context(sampled: SampledSet, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        contexts.append(keep)
        pooled = (text * keep[..., None]).sum(1, keepdim=True) / keep.sum(1).clamp(min=1)[:, None, None]
        return pooled.expand(-1, 3, -1), torch.ones(4, 3, dtype=torch.bool)

    text_set, patch_set = sampler(text, text_mask, visual_context, patches, patch_mask)
    assert patch_set is not None and len(text_set.keep) == len(patch_set.keep) == 3
    for stage in range(3):
        expected_text = [kept_count(n, config.text_keep[: stage + 1]) for n in lengths]
        assert text_set.keep[stage].sum(dim=1).tolist() == expected_text
        assert (
            patch_set.keep[stage].sum(dim=1).tolist() == [kept_count(49, config.patch_keep[: stage + 1])] * 4
        )
        previous = text_mask if stage == 0 else text_set.keep[stage - 1]
        assert not (text_set.keep[stage] & ~previous).any()  # refinement only ever removes
        assert contexts[stage].equal(previous)  # each stage scores against the previous stage's context
    assert kept_count(20, [0.75, 0.5, 0.5]) == math.ceil(math.ceil(15 * 0.5) * 0.5)


def test_gate_is_one_in_value_and_passes_gradient_to_the_scorers() -> None:
    torch.manual_seed(0)
    sampler = StageRefinedSampler(8, SamplerConfig(text_keep=[0.5, 0.5], patch_keep=[0.5, 0.5]))
    text = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    context = torch.randn(2, 3, 8)
    text_set, _ = sampler(text, mask, lambda sampled, keep: (context, torch.ones(2, 3, dtype=torch.bool)))
    gated = text_set.apply_gate(text)
    assert torch.allclose(gated, text)
    torch.autograd.backward((gated * torch.randn_like(gated)).sum())
    for scorer in sampler.text.scorers:
        assert isinstance(scorer, RelevanceScorer)
        assert scorer.query.weight.grad is not None and scorer.query.weight.grad.abs().sum() > 0
