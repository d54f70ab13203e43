from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from training.model.crf import CRF, compact


def brute_force(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[float, list[int]]:
    """log Z and the best path of one row by enumerating every label sequence of its masked positions."""
    steps = emissions[mask]
    if steps.shape[0] == 0:
        return 0.0, []
    scores, paths = [], []
    for path in itertools.product(range(crf.num_labels), repeat=steps.shape[0]):
        score = crf.start[path[0]] + crf.end[path[-1]] + sum(steps[t, label] for t, label in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))
        scores.append(score)
        paths.append(list(path))
    stacked = torch.stack(scores)
    return float(torch.logsumexp(stacked, dim=0)), paths[int(stacked.argmax())]


@pytest.fixture
def crf_case() -> tuple[CRF, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    crf = CRF(3)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    emissions = torch.randn(5, 4, 3) * 2
    mask = torch.tensor(
        [
            [True, True, True, True],
            [True, True, False, False],
            [True, False, False, False],
            [False, False, False, False],
            [True, False, True, True],  # a hole: a word without subwords
        ]
    )
    return crf, emissions, mask


def test_log_partition_and_viterbi_match_enumeration(
    crf_case: tuple[CRF, torch.Tensor, torch.Tensor],
) -> None:
    crf, emissions, mask = crf_case
    labels = torch.randint(0, 3, mask.shape)
    nll = crf.neg_log_likelihood(emissions, labels, mask, reduction="none")
    paths = crf.viterbi(emissions, mask)
    for row in range(mask.shape[0]):
        log_z, best = brute_force(crf, emissions[row], mask[row])
        gold = labels[row][mask[row]].tolist()
        if gold:
            gold_score = crf.start[gold[0]] + crf.end[gold[-1]]
            gold_score = gold_score + sum(emissions[row][mask[row]][t, g] for t, g in enumerate(gold))
            gold_score = gold_score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(gold))
            assert float(nll[row]) == pytest.approx(log_z - float(gold_score), abs=1e-4)
        else:
            assert float(nll[row]) == 0.0
        assert paths[row] == best


def test_gradients_flow_to_all_parameters(crf_case: tuple[CRF, torch.Tensor, torch.Tensor]) -> None:
    crf, emissions, mask = crf_case
    emissions.requires_grad_(True)
    torch.autograd.backward(
        crf.neg_log_likelihood(emissions, torch.zeros(mask.shape, dtype=torch.long), mask)
    )
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in crf.parameters())
    assert emissions.grad is not None and float(emissions.grad[3].abs().sum()) == 0.0  # empty row


def test_to_params_agrees_with_serving_viterbi(crf_case: tuple[CRF, torch.Tensor, torch.Tensor]) -> None:
    decoding = pytest.importorskip("bga_mner.decoding")
    if not hasattr(decoding, "viterbi"):
        pytest.skip("bga_mner.decoding.viterbi has not landed yet")
    crf, emissions, mask = crf_case
    params = crf.to_params()
    np.testing.assert_allclose(params.transitions, crf.transitions.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(params.start, crf.start.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(params.end, crf.end.detach().numpy(), rtol=1e-6)
    log_z = crf.log_partition(*_compacted(emissions, mask))
    for row, path in enumerate(crf.viterbi(emissions, mask)):
        words = emissions[row][mask[row]].numpy()
        serving_path, _ = decoding.viterbi(words, params)
        assert list(serving_path) == path
        if path and hasattr(decoding, "log_partition"):
            assert decoding.log_partition(words, params) == pytest.approx(float(log_z[row]), abs=1e-4)


def _compacted(emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    new_mask, (gathered,) = compact(mask, emissions)
    return gathered, new_mask
