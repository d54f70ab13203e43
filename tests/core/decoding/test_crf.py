from __future__ import annotations

import itertools
import json

import numpy as np
import numpy.typing as npt
import pytest

from bga_mner.decoding import CRFParams, log_partition, marginals, viterbi


def random_case(
    rng: np.random.Generator, length: int, num_labels: int
) -> tuple[npt.NDArray[np.float64], CRFParams]:
    emissions = rng.normal(scale=2.0, size=(length, num_labels))
    crf = CRFParams(
        rng.normal(size=num_labels), rng.normal(size=num_labels), rng.normal(size=(num_labels, num_labels))
    )
    return emissions, crf


def path_score(emissions: npt.NDArray[np.float64], crf: CRFParams, path: tuple[int, ...]) -> float:
    score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    return float(score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path)))


CASES = [(length, labels, seed) for length in range(5) for labels in range(3, 6) for seed in range(3)]


@pytest.mark.parametrize(("length", "num_labels", "seed"), CASES)
def test_viterbi_and_marginals_match_brute_force(length: int, num_labels: int, seed: int) -> None:
    emissions, crf = random_case(np.random.default_rng(seed), length, num_labels)
    path, score = viterbi(emissions, crf)
    post = marginals(emissions, crf)
    assert post.shape == (length, num_labels)
    if length == 0:
        assert (path, score) == ([], 0.0)
        assert log_partition(emissions, crf) == 0.0
        return
    everything = {
        p: path_score(emissions, crf, p) for p in itertools.product(range(num_labels), repeat=length)
    }
    best = max(everything, key=lambda p: everything[p])
    assert tuple(path) == best
    assert score == pytest.approx(everything[best])
    log_z = np.logaddexp.reduce(list(everything.values()))
    assert log_partition(emissions, crf) == pytest.approx(log_z)
    expected = np.zeros((length, num_labels))
    for p, s in everything.items():
        for t, y in enumerate(p):
            expected[t, y] += np.exp(s - log_z)
    np.testing.assert_allclose(post, expected, rtol=1e-9, atol=1e-12)


def test_marginals_are_stable_for_huge_scores_and_long_sequences() -> None:
    rng = np.random.default_rng(0)
    emissions = rng.normal(scale=1e4, size=(500, 9))
    crf = CRFParams(rng.normal(size=9) * 1e3, rng.normal(size=9), rng.normal(size=(9, 9)) * 1e3)
    post = marginals(emissions, crf)
    assert np.isfinite(post).all()
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    path, _ = viterbi(emissions, crf)
    # with such peaked scores the posterior mode is the Viterbi path
    assert list(post.argmax(axis=1)) == path


def test_forbidden_transition_is_never_taken() -> None:
    labels = 3  # O, B-X, I-X
    transitions = np.zeros((labels, labels))
    transitions[0, 2] = -1e4  # O -> I-X
    crf = CRFParams(np.array([0.0, 0.0, -1e4]), np.zeros(labels), transitions)
    emissions = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    path, _ = viterbi(emissions, crf)
    assert path == [1, 2]


def test_params_round_trip_through_json_and_validate_shapes() -> None:
    _, crf = random_case(np.random.default_rng(1), 2, 4)
    again = CRFParams.from_lists(**json.loads(json.dumps(crf.to_lists())))
    np.testing.assert_array_equal(again.transitions, crf.transitions)
    np.testing.assert_array_equal(again.start, crf.start)
    np.testing.assert_array_equal(again.end, crf.end)
    assert again.num_labels == 4
    with pytest.raises(ValueError, match=r"transitions \[L, L\].*transitions \(4, 3\)"):
        CRFParams.from_lists([0.0] * 4, [0.0] * 4, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match="finite"):
        CRFParams.from_lists([float("nan")], [0.0], [[0.0]])
    with pytest.raises(ValueError, match=r"emissions must be \[T, 4\]"):
        viterbi(np.zeros((3, 5)), crf)
    with pytest.raises(ValueError, match="emissions must be finite"):
        marginals(np.full((2, 4), np.nan), crf)
