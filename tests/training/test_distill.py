"""CRF marginals by the gradient of log Z, and the distillation loss built on them."""

from __future__ import annotations

import itertools

import pytest
import torch

from training.distill import batch_targets, crf_marginals, distill_loss, window_keys
from training.model.crf import CRF


def _brute_marginals(crf: CRF, emissions: torch.Tensor, length: int) -> torch.Tensor:
    labels = crf.num_labels
    weights = torch.zeros(length, labels)
    scores, paths = [], []
    for path in itertools.product(range(labels), repeat=length):
        score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))
        scores.append(score)
        paths.append(path)
    probabilities = torch.softmax(torch.stack(scores), dim=0)
    for probability, path in zip(probabilities, paths, strict=True):
        for t, y in enumerate(path):
            weights[t, y] += probability
    return weights


def test_marginals_match_enumeration_and_are_zero_where_masked() -> None:
    torch.manual_seed(0)
    crf = CRF(3)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    marginals = crf_marginals(crf, emissions, mask)
    with torch.no_grad():
        assert torch.allclose(marginals[0], _brute_marginals(crf, emissions[0], 4), atol=1e-5)
        assert torch.allclose(marginals[1, :2], _brute_marginals(crf, emissions[1], 2), atol=1e-5)
    assert torch.all(marginals[1, 2:] == 0)
    assert torch.allclose(marginals[0].sum(dim=-1), torch.ones(4), atol=1e-5)


def test_distill_loss_is_smallest_at_the_teachers_marginals_and_has_a_gradient() -> None:
    torch.manual_seed(1)
    crf = CRF(3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    teacher = torch.randn(1, 3, 3) * 2
    targets = crf_marginals(crf, teacher, mask).detach()
    at_teacher = distill_loss(crf, teacher, mask, targets)
    student = torch.zeros(1, 3, 3, requires_grad=True)
    elsewhere = distill_loss(crf, student, mask, targets)
    assert float(elsewhere.detach()) > float(at_teacher.detach())
    (gradient,) = torch.autograd.grad(elsewhere, student)
    assert float(gradient.abs().sum()) > 0


def test_rows_without_targets_add_nothing() -> None:
    crf = CRF(3)
    mask = torch.ones(2, 2, dtype=torch.bool)
    emissions = torch.randn(2, 2, 3)
    targets = batch_targets([torch.full((2, 3), 1 / 3), None], width=2, num_labels=3)
    assert torch.all(targets[1] == 0)
    both = distill_loss(crf, emissions, mask, targets)
    first = distill_loss(crf, emissions[:1], mask[:1], targets[:1])
    assert float(both.detach()) == pytest.approx(float(first.detach()) / 2, rel=1e-5)


def test_window_keys_number_windows_within_each_sentence() -> None:
    class Example:
        def __init__(self, sentence_index: int) -> None:
            self.sentence_index = sentence_index

    examples = [Example(0), Example(1), Example(1), Example(2), Example(1)]
    assert window_keys(examples) == [(0, 0), (1, 0), (1, 1), (2, 0), (1, 2)]  # type: ignore[arg-type]
