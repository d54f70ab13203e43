"""The batched decoders against the per-post algorithms they replaced and against brute force.

``reference_*`` below are the per-post numpy implementations that shipped before decoding was
batched, kept verbatim as the oracle: the batched code must give the same paths, scores, marginals
and entities, whatever else is in the batch and however long each sequence is.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from bga_mner.decoding import (
    CRFParams,
    Entity,
    bio_spans,
    decode_batch,
    decode_words,
    log_partition,
    log_partition_batch,
    marginals,
    marginals_batch,
    viterbi,
    viterbi_batch,
)
from bga_mner.preprocessing import Word

FloatArray = npt.NDArray[np.float64]
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def reference_logsumexp(values: FloatArray, axis: int) -> FloatArray:
    peak = values.max(axis=axis)
    shifted = values - (peak[None, :] if axis == 0 else peak[:, None])
    return np.asarray(np.log(np.exp(shifted).sum(axis=axis)) + peak, dtype=np.float64)


def reference_viterbi(scores: FloatArray, crf: CRFParams) -> tuple[list[int], float]:
    length = scores.shape[0]
    if length == 0:
        return [], 0.0
    best = crf.start + scores[0]
    backpointers = np.zeros((length, crf.num_labels), dtype=np.int64)
    for t in range(1, length):
        candidates = best[:, None] + crf.transitions
        backpointers[t] = np.argmax(candidates, axis=0)
        best = candidates[backpointers[t], np.arange(crf.num_labels)] + scores[t]
    best = best + crf.end
    last = int(np.argmax(best))
    path = [last]
    for t in range(length - 1, 0, -1):
        path.append(int(backpointers[t, path[-1]]))
    path.reverse()
    return path, float(best[last])


def reference_forward_backward(scores: FloatArray, crf: CRFParams) -> tuple[FloatArray, FloatArray]:
    length = scores.shape[0]
    alpha = np.empty_like(scores)
    beta = np.empty_like(scores)
    alpha[0] = crf.start + scores[0]
    for t in range(1, length):
        alpha[t] = reference_logsumexp(alpha[t - 1][:, None] + crf.transitions, axis=0) + scores[t]
    beta[-1] = crf.end
    for t in range(length - 2, -1, -1):
        beta[t] = reference_logsumexp(crf.transitions + (scores[t + 1] + beta[t + 1])[None, :], axis=1)
    return alpha, beta


def reference_log_partition(scores: FloatArray, crf: CRFParams) -> float:
    if scores.shape[0] == 0:
        return 0.0
    alpha, _ = reference_forward_backward(scores, crf)
    return float(reference_logsumexp((alpha[-1] + crf.end)[None, :], axis=1)[0])


def reference_marginals(scores: FloatArray, crf: CRFParams) -> FloatArray:
    if scores.shape[0] == 0:
        return np.zeros((0, crf.num_labels), dtype=np.float64)
    alpha, beta = reference_forward_backward(scores, crf)
    log_z = reference_logsumexp((alpha[-1] + crf.end)[None, :], axis=1)[0]
    posterior = np.exp(alpha + beta - log_z)
    return np.asarray(posterior / posterior.sum(axis=1, keepdims=True), dtype=np.float64)


def reference_decode_words(
    text: str, words: list[Word], emissions: FloatArray, labels: list[str], crf: CRFParams
) -> list[Entity]:
    kept = np.flatnonzero(np.isfinite(emissions).all(axis=1))
    scores = np.asarray(emissions[kept], dtype=np.float64)
    path, _ = reference_viterbi(scores, crf)
    posterior = reference_marginals(scores, crf)
    tags = [labels[label] for label in path]
    entities = []
    for first, stop, entity_type in bio_spans(tags):
        start, end = words[kept[first]].start, words[kept[stop - 1]].end
        confidence = float(np.mean([posterior[k, path[k]] for k in range(first, stop)]))
        entities.append(Entity(text[start:end], entity_type, start, end, confidence))
    return entities


def random_crf(rng: np.random.Generator, num_labels: int, scale: float = 1.0) -> CRFParams:
    return CRFParams(
        rng.normal(size=num_labels) * scale,
        rng.normal(size=num_labels) * scale,
        rng.normal(size=(num_labels, num_labels)) * scale,
    )


def padded_batch(
    rng: np.random.Generator, lengths: list[int], num_labels: int, scale: float = 2.0
) -> tuple[FloatArray, list[FloatArray]]:
    """Right-padded emissions with NaN on padding (which must never be read) and the unpadded rows."""
    sequences = [rng.normal(scale=scale, size=(n, num_labels)) for n in lengths]
    padded = np.full((len(lengths), max(lengths, default=0), num_labels), np.nan)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = sequence
    return padded, sequences


MIXED = [
    [0],
    [1],
    [3, 0, 1, 7, 1, 0, 12, 2],
    [0, 0, 0],
    [5, 5, 5, 5],
    [1, 40, 2, 39, 17, 0, 23, 8, 8, 1],
    # wide enough for the sliced reductions (crf._WIDE), thinning out to one long sequence
    [int(n) for n in np.random.default_rng(42).integers(0, 30, size=150)] + [45],
]


@pytest.mark.parametrize("lengths", MIXED)
@pytest.mark.parametrize("num_labels", [1, 3, 9])
@pytest.mark.parametrize("seed", range(3))
def test_batched_crf_equals_the_per_post_algorithms(lengths: list[int], num_labels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crf = random_crf(rng, num_labels)
    padded, sequences = padded_batch(rng, lengths, num_labels)
    paths, totals = viterbi_batch(padded, lengths, crf)
    posterior = marginals_batch(padded, lengths, crf)
    log_z = log_partition_batch(padded, lengths, crf)
    assert posterior.shape == padded.shape and totals.shape == log_z.shape == (len(lengths),)
    for row, sequence in enumerate(sequences):
        # Viterbi does the same float operations per sequence: equal bit for bit
        assert (paths[row], float(totals[row])) == reference_viterbi(sequence, crf)
        # forward-backward adds the same numbers in the same order too: also bit for bit
        np.testing.assert_array_equal(posterior[row, : len(sequence)], reference_marginals(sequence, crf))
        assert (posterior[row, len(sequence) :] == 0.0).all()
        assert log_z[row] == reference_log_partition(sequence, crf)
        # the single-sequence API is the batched one with B = 1
        assert viterbi(sequence, crf) == (paths[row], float(totals[row]))
        np.testing.assert_array_equal(marginals(sequence, crf), posterior[row, : len(sequence)])
        assert log_partition(sequence, crf) == log_z[row]


@pytest.mark.parametrize("seed", range(4))
def test_batched_crf_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_labels = 3
    lengths = [4, 0, 1, 3, 2, 4]
    crf = random_crf(rng, num_labels)
    padded, sequences = padded_batch(rng, lengths, num_labels)
    paths, totals = viterbi_batch(padded, lengths, crf)
    posterior = marginals_batch(padded, lengths, crf)
    log_z = log_partition_batch(padded, lengths, crf)
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        if n == 0:
            assert (paths[row], totals[row], log_z[row]) == ([], 0.0, 0.0)
            continue
        everything: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(num_labels), repeat=n):
            score = crf.start[path[0]] + crf.end[path[-1]] + sum(sequence[t, y] for t, y in enumerate(path))
            everything[path] = float(score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path)))
        best = max(everything, key=lambda p: everything[p])
        assert tuple(paths[row]) == best and totals[row] == pytest.approx(everything[best])
        expected_log_z = np.logaddexp.reduce(list(everything.values()))
        assert log_z[row] == pytest.approx(expected_log_z)
        expected = np.zeros((n, num_labels))
        for path, score in everything.items():
            for t, y in enumerate(path):
                expected[t, y] += np.exp(score - expected_log_z)
        np.testing.assert_allclose(posterior[row, :n], expected, rtol=1e-9, atol=1e-12)


def test_results_do_not_depend_on_batch_order_or_company() -> None:
    rng = np.random.default_rng(7)
    crf = random_crf(rng, 9)
    lengths = [int(n) for n in rng.integers(0, 30, size=40)]
    padded, _ = padded_batch(rng, lengths, 9)
    paths, totals = viterbi_batch(padded, lengths, crf)
    posterior = marginals_batch(padded, lengths, crf)
    shuffle = rng.permutation(len(lengths))
    again_paths, again_totals = viterbi_batch(padded[shuffle], [lengths[i] for i in shuffle], crf)
    assert again_paths == [paths[i] for i in shuffle]
    np.testing.assert_array_equal(again_totals, totals[shuffle])
    np.testing.assert_array_equal(
        marginals_batch(padded[shuffle], [lengths[i] for i in shuffle], crf), posterior[shuffle]
    )


def test_batched_marginals_are_stable_for_huge_scores() -> None:
    rng = np.random.default_rng(0)
    lengths = [500, 3, 0, 250]
    crf = random_crf(rng, 9, scale=1e3)
    padded, sequences = padded_batch(rng, lengths, 9, scale=1e4)
    posterior = marginals_batch(padded, lengths, crf)
    assert np.isfinite(posterior).all()
    paths, _ = viterbi_batch(padded, lengths, crf)
    for row, sequence in enumerate(sequences):
        np.testing.assert_allclose(posterior[row, : len(sequence)].sum(axis=1), 1.0)
        assert list(posterior[row, : len(sequence)].argmax(axis=1)) == paths[row]


def test_empty_batches_and_bad_input() -> None:
    crf = random_crf(np.random.default_rng(0), 4)
    assert viterbi_batch(np.zeros((0, 5, 4)), [], crf)[0] == []
    assert marginals_batch(np.zeros((0, 0, 4)), np.zeros(0, dtype=int), crf).shape == (0, 0, 4)
    paths, totals = viterbi_batch(np.zeros((2, 0, 4)), [0, 0], crf)
    assert paths == [[], []] and list(totals) == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"emissions must be \[B, T, 4\]"):
        viterbi_batch(np.zeros((2, 3)), [3, 3], crf)
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        marginals_batch(np.zeros((2, 3, 4)), [3.0, 1.0], crf)
    with pytest.raises(ValueError, match=r"lengths must be within \[0, 3\]"):
        viterbi_batch(np.zeros((2, 3, 4)), [4, 1], crf)
    nan_inside = np.zeros((2, 3, 4))
    nan_inside[1, 1] = np.nan
    with pytest.raises(ValueError, match="emissions must be finite"):
        log_partition_batch(nan_inside, [3, 2], crf)
    assert viterbi_batch(nan_inside, [3, 1], crf)[0][1] == viterbi(nan_inside[1, :1], crf)[0]


def random_post(rng: np.random.Generator, n_words: int) -> tuple[str, list[Word], FloatArray]:
    """Words "w0 w1 ..." with emissions that favour a few entities and some words without subwords."""
    words, offset = [], 0
    for k in range(n_words):
        words.append(Word(f"w{k}", offset, offset + len(f"w{k}")))
        offset += len(f"w{k}") + 1
    emissions = rng.normal(scale=1.5, size=(n_words, len(LABELS)))
    emissions[:, 0] += 1.0
    emissions[rng.random(n_words) < 0.15] = np.nan
    return " ".join(w.text for w in words), words, emissions


@pytest.mark.parametrize("seed", range(5))
def test_decode_batch_equals_decoding_post_by_post(seed: int) -> None:
    rng = np.random.default_rng(seed)
    crf = random_crf(rng, len(LABELS))
    sizes = [0, 1, 2, 1, 0, *(int(n) for n in rng.integers(0, 40, size=150))]  # > crf._WIDE tagged
    posts = [random_post(rng, n) for n in sizes]
    all_dropped = np.full((2, len(LABELS)), np.nan)  # no word has subwords: a chain of length 0
    posts.append(("x y", [Word("x", 0, 1), Word("y", 2, 3)], all_dropped))
    decoded = decode_batch([p[0] for p in posts], [p[1] for p in posts], [p[2] for p in posts], LABELS, crf)
    assert len(decoded) == len(posts)
    assert sum(len(entities) for entities in decoded) > 20, "the case should exercise entities"
    for (text, words, emissions), entities in zip(posts, decoded, strict=True):
        expected = reference_decode_words(text, words, emissions, LABELS, crf)
        assert entities == expected  # spans, types and scores, bit for bit
        # alone or in company, a post decodes to the same entities, scores equal bit for bit
        assert decode_words(text, words, emissions, LABELS, crf) == entities


def test_decode_batch_edge_cases_and_errors() -> None:
    crf = CRFParams(np.zeros(9), np.zeros(9), np.zeros((9, 9)))
    assert decode_batch([], [], [], LABELS, crf) == []
    assert decode_batch(["", " "], [[], []], [np.zeros((0, 9)), np.zeros((0, 9))], LABELS, crf) == [[], []]
    words = [Word("a", 0, 1), Word("b", 2, 3)]
    with pytest.raises(ValueError, match="post 1: need one emission row per word: 2 words"):
        decode_batch(["a b", "a b"], [words, words], [np.zeros((2, 9)), np.zeros((3, 9))], LABELS, crf)
    with pytest.raises(ValueError, match="1 texts, 2 word lists"):
        decode_batch(["a b"], [words, words], [np.zeros((2, 9))], LABELS, crf)
    with pytest.raises(ValueError, match=r"labels \(5\) and CRF \(9\) disagree"):
        decode_batch(["a b"], [words], [np.zeros((2, 5))], LABELS[:5], crf)
