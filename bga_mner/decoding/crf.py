"""Linear-chain CRF inference in numpy with the transitions exported from training.

Training learns the CRF in torch; serving decodes with these functions, so the exported
``start``/``end``/``transitions`` must mean exactly the same thing in both places:

    score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_{T-1}]

(the convention of pytorch-crf and torchcrf-style layers).

Every function has a batched form over right-padded ``[B, T, L]`` emissions with per-sequence
lengths; the single-sequence functions are the batched ones with B = 1, so there is one copy of
each algorithm. A worker decodes a whole batch of posts in one call: per-post numpy calls on
22-word posts spend nearly all their time in interpreter overhead, not arithmetic.

Inside, sequences are sorted longest first, so at step ``t`` the ones still running are a
contiguous prefix ``[:active[t]]``: each step works on views of that prefix, no masks and no
arithmetic on padding. Per sequence, Viterbi and forward-backward do the same float operations in
the same order as a one-sequence loop (same additions, sums, maxima and first-index tie-breaking),
so paths, scores and marginals are bit for bit independent of what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CRFParams",
    "SortedBatch",
    "log_partition",
    "log_partition_batch",
    "log_partition_sorted",
    "marginals",
    "marginals_batch",
    "marginals_sorted",
    "viterbi",
    "viterbi_batch",
    "viterbi_sorted",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class CRFParams:
    """Exported CRF parameters; ``transitions[i, j]`` scores label i followed by label j."""

    start: FloatArray
    end: FloatArray
    transitions: FloatArray

    def __post_init__(self) -> None:
        # Store float64 copies: decoding long posts in float32 loses digits in the partition sum.
        for name in ("start", "end", "transitions"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=np.float64))
        n = self.start.shape[0] if self.start.ndim == 1 else -1
        if self.start.ndim != 1 or self.end.shape != (n,) or self.transitions.shape != (n, n):
            raise ValueError(
                "CRF parameters must be start [L], end [L] and transitions [L, L]; got "
                f"start {self.start.shape}, end {self.end.shape}, transitions {self.transitions.shape}"
            )
        if not (
            np.isfinite(self.start).all()
            and np.isfinite(self.end).all()
            and np.isfinite(self.transitions).all()
        ):
            raise ValueError("CRF parameters must be finite")

    @property
    def num_labels(self) -> int:
        return int(self.start.shape[0])

    @classmethod
    def from_lists(
        cls, start: Sequence[float], end: Sequence[float], transitions: Sequence[Sequence[float]]
    ) -> CRFParams:
        """Build from the JSON lists stored in the manifest."""
        return cls(np.asarray(start), np.asarray(end), np.asarray(transitions))

    def to_lists(self) -> dict[str, Any]:
        """JSON-ready ``{"start": [...], "end": [...], "transitions": [[...], ...]}``."""
        return {
            "start": self.start.tolist(),
            "end": self.end.tolist(),
            "transitions": self.transitions.tolist(),
        }


@dataclass(frozen=True)
class SortedBatch:
    """Right-padded float64 scores sorted longest first: what the batched algorithms run on.

    ``active[t]`` is how many sequences are longer than ``t``; sorting makes them the prefix
    ``[:active[t]]``. Build one with :meth:`build` (callers that own the layout, like
    ``decode_batch``) or let the ``*_batch`` functions sort arbitrary input.
    """

    scores: FloatArray  # [B, T, L]
    lengths: IndexArray  # [B], non-increasing
    active: list[int]  # [T]

    @classmethod
    def build(cls, scores: FloatArray, lengths: IndexArray) -> SortedBatch:
        if scores.ndim != 3 or lengths.shape != scores.shape[:1]:
            raise ValueError(f"need scores [B, T, L] and lengths [B], got {scores.shape} and {lengths.shape}")
        steps = scores.shape[1]
        if lengths.size == 1 and 0 <= (length := int(lengths[0])) <= steps:  # one sequence: no counting
            return cls(scores, lengths, [1] * length + [0] * (steps - length))
        if lengths.size and (np.any(lengths[1:] > lengths[:-1]) or lengths[-1] < 0 or lengths[0] > steps):
            raise ValueError("lengths must be non-increasing and within [0, T]")
        active = np.count_nonzero(lengths[:, None] > np.arange(steps)[None, :], axis=0)
        return cls(scores, lengths, active.tolist())

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """``[B, T]``: True on real positions, False on padding."""
        return np.asarray(np.arange(self.scores.shape[1])[None, :] < self.lengths[:, None])

    def subset(self, rows: IndexArray) -> SortedBatch:
        """The sequences at ``rows`` (increasing), still sorted longest first."""
        if rows.size == self.lengths.size:
            return self
        return SortedBatch.build(self.scores[rows], self.lengths[rows])


def _check(emissions: npt.ArrayLike, crf: CRFParams) -> SortedBatch:
    """One sequence ``[T, L]`` as a batch of one (no padding, no sorting)."""
    scores = np.asarray(emissions, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != crf.num_labels:
        raise ValueError(f"emissions must be [T, {crf.num_labels}], got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("emissions must be finite (leave words without subwords out, see decode_words)")
    return SortedBatch.build(scores[None], np.array([scores.shape[0]], dtype=np.intp))


def _check_batch(
    emissions: npt.ArrayLike, lengths: npt.ArrayLike, crf: CRFParams
) -> tuple[SortedBatch, IndexArray]:
    """Padded ``[B, T, L]`` in any order -> a sorted batch (padding zeroed) and the inverse order."""
    scores = np.asarray(emissions, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[2] != crf.num_labels:
        raise ValueError(f"emissions must be [B, T, {crf.num_labels}], got {scores.shape}")
    raw = np.asarray(lengths)
    if raw.shape != scores.shape[:1] or (raw.size and raw.dtype.kind not in "iu"):
        raise ValueError(f"lengths must be {scores.shape[0]} integers, got {raw.dtype} {raw.shape}")
    sizes = raw.astype(np.intp)
    if sizes.size and (sizes.min() < 0 or sizes.max() > scores.shape[1]):
        raise ValueError(f"lengths must be within [0, {scores.shape[1]}], got {sizes.min()}..{sizes.max()}")
    valid = np.arange(scores.shape[1])[None, :] < sizes[:, None]
    if not np.isfinite(scores[valid]).all():
        raise ValueError("emissions must be finite (leave words without subwords out, see decode_words)")
    order = np.argsort(-sizes, kind="stable")
    padded = np.where(valid[order][..., None], scores[order], 0.0)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return SortedBatch.build(padded, sizes[order]), inverse


# From this many sequences on, a max or sum over a short label axis runs as a few whole-array
# operations on slices: numpy's reduce walks a 9-long axis element by element (~2-4 ns each), the
# slices cost ~1 ns an element but a call each, which only pays off for wide arrays (measured
# crossover ~64 sequences at L = 9). Both give bit-identical results: max is exact, and both sums
# add the labels in the same order, first to last (what numpy's reduce does over a middle axis).
_WIDE = 64


def _max_over_labels(values: FloatArray) -> FloatArray:
    """``values.max(axis=1)`` of ``[n, K, L]``."""
    if values.shape[0] < _WIDE:
        return np.asarray(values.max(axis=1), dtype=np.float64)
    if values.shape[1] == 1:
        return values[:, 0].copy()  # never a view: _logsumexp overwrites its input
    while values.shape[1] > 1:
        half = values.shape[1] // 2
        folded = np.maximum(values[:, :half], values[:, half : 2 * half])
        values = np.concatenate([folded, values[:, 2 * half :]], axis=1) if values.shape[1] % 2 else folded
    return values[:, 0]


def _sum_over_labels(values: FloatArray) -> FloatArray:
    """``values.sum(axis=1)`` of ``[n, K, L]``, adding ``values[:, 0], values[:, 1], ...`` in order."""
    total = values[:, 0].copy()
    for k in range(1, values.shape[1]):
        total += values[:, k]
    return total


def _logsumexp(values: FloatArray, axis: int) -> FloatArray:
    """Stable log-sum-exp over axis 1 or 2 of a finite C-ordered ``[n, L, L]``, which it overwrites.

    Sums over axis 2 stay numpy's (pairwise over a contiguous axis), as in the one-post loop this
    replaced, so marginals are bit-identical to what serving computed before batching.
    """
    if values.shape[0] < _WIDE:
        peak = values.max(axis=axis, keepdims=True)
        values -= peak
        np.exp(values, out=values)
        return np.asarray(np.log(values.sum(axis=axis)) + (peak[:, 0] if axis == 1 else peak[:, :, 0]))
    wide_peak = _max_over_labels(np.moveaxis(values, axis, 1))
    values -= np.expand_dims(wide_peak, axis)
    np.exp(values, out=values)
    total = _sum_over_labels(values) if axis == 1 else values.sum(axis=2)
    return np.asarray(np.log(total) + wide_peak)


def viterbi_sorted(batch: SortedBatch, crf: CRFParams) -> tuple[IndexArray, FloatArray]:
    """Best paths ``[B, T]`` (padding 0) and their scores ``[B]`` (0.0 for empty sequences)."""
    scores, active = batch.scores, batch.active
    size, steps, num_labels = scores.shape
    paths = np.zeros((size, steps), dtype=np.intp)
    totals = np.zeros(size, dtype=np.float64)
    running = active[0] if steps else 0
    if running == 0:
        return paths, totals
    best = crf.start + scores[:running, 0]
    backpointers = np.zeros((steps, running, num_labels), dtype=np.intp)
    for t in range(1, steps):
        n = active[t]
        if n == 0:
            break
        candidates = best[:n, :, None] + crf.transitions  # [sequence, previous, current]
        backpointers[t, :n] = candidates.argmax(axis=1)
        best[:n] = _max_over_labels(candidates) + scores[:n, t]
    best += crf.end
    last = best.argmax(axis=1)
    rows = np.arange(running)
    totals[:running] = best[rows, last]
    paths[rows, batch.lengths[:running] - 1] = last
    if running == 1:  # one sequence: Python ints beat a numpy call per step
        pointers, label = backpointers[:, 0].tolist(), int(last[0])
        for t in range(batch.lengths[0] - 1, 0, -1):
            label = pointers[t][label]
            paths[0, t - 1] = label
        return paths, totals
    # Backtrack through flat [T, sequence * L] pointers: one 1-D gather per step.
    flat = backpointers.reshape(steps, running * num_labels)
    offsets = rows * num_labels
    for t in range(steps - 1, 0, -1):
        n = active[t]
        if n:
            paths[:n, t - 1] = flat[t, offsets[:n] + paths[:n, t]]
    return paths, totals


def _forward_backward(batch: SortedBatch, crf: CRFParams) -> tuple[FloatArray, FloatArray]:
    scores, active = batch.scores, batch.active
    steps = scores.shape[1]
    alpha = np.zeros_like(scores)
    beta = np.empty_like(scores)
    beta[...] = crf.end
    if steps == 0:
        return alpha, beta
    alpha[:, 0] = crf.start + scores[:, 0]
    for t in range(1, steps):
        n = active[t]
        if n == 0:
            break
        alpha[:n, t] = _logsumexp(alpha[:n, t - 1, :, None] + crf.transitions, axis=1) + scores[:n, t]
    for t in range(steps - 2, -1, -1):
        n = active[t + 1]
        if n:
            following = scores[:n, t + 1] + beta[:n, t + 1]
            beta[:n, t] = _logsumexp(crf.transitions + following[:, None, :], axis=2)
    return alpha, beta


def _log_z(alpha: FloatArray, batch: SortedBatch, crf: CRFParams) -> FloatArray:
    if alpha.shape[1] == 0:
        return np.zeros(alpha.shape[0], dtype=np.float64)
    last = alpha[np.arange(alpha.shape[0]), np.maximum(batch.lengths - 1, 0)]
    final = last + crf.end
    peak = final.max(axis=1)
    log_z = np.log(np.exp(final - peak[:, None]).sum(axis=1)) + peak
    return np.where(batch.lengths > 0, log_z, 0.0)


def log_partition_sorted(batch: SortedBatch, crf: CRFParams) -> FloatArray:
    """log Z of every sequence ``[B]`` (0.0 for empty ones)."""
    alpha, _ = _forward_backward(batch, crf)
    return _log_z(alpha, batch, crf)


def marginals_sorted(batch: SortedBatch, crf: CRFParams) -> FloatArray:
    """Posteriors ``[B, T, L]``; rows of padding are 0."""
    alpha, beta = _forward_backward(batch, crf)
    log_z = _log_z(alpha, batch, crf)
    if not batch.lengths.size or batch.lengths[-1] == batch.scores.shape[1]:  # no padding
        full = np.exp(alpha + beta - log_z[:, None, None])
        # exp() of log-space values can exceed 1 by rounding; renormalise each row.
        return np.asarray(full / full.sum(axis=2, keepdims=True), dtype=np.float64)
    valid = batch.valid
    posterior = np.zeros_like(batch.scores)
    rows = np.exp((alpha + beta)[valid] - np.repeat(log_z, batch.lengths)[:, None])
    posterior[valid] = rows / rows.sum(axis=1, keepdims=True)
    return posterior


def viterbi(emissions: npt.ArrayLike, crf: CRFParams) -> tuple[list[int], float]:
    """The best label sequence and its score; ``([], 0.0)`` for an empty sequence."""
    paths, totals = viterbi_sorted(_check(emissions, crf), crf)
    return paths[0].tolist(), float(totals[0])


def log_partition(emissions: npt.ArrayLike, crf: CRFParams) -> float:
    """log Z: log-sum-exp of the scores of all label sequences (0.0 for an empty sequence)."""
    return float(log_partition_sorted(_check(emissions, crf), crf)[0])


def marginals(emissions: npt.ArrayLike, crf: CRFParams) -> FloatArray:
    """Posterior ``p(y_t = l | x)`` for every position, by log-space forward-backward: [T, L]."""
    return np.asarray(marginals_sorted(_check(emissions, crf), crf)[0], dtype=np.float64)


def viterbi_batch(
    emissions: npt.ArrayLike, lengths: npt.ArrayLike, crf: CRFParams
) -> tuple[list[list[int]], FloatArray]:
    """:func:`viterbi` of each right-padded sequence of ``[B, T, L]``: paths (each ``lengths[b]``
    long) and scores ``[B]``. Padding may hold anything, NaN included."""
    batch, inverse = _check_batch(emissions, lengths, crf)
    paths, totals = viterbi_sorted(batch, crf)
    sizes = batch.lengths[inverse]
    ordered = paths[inverse]
    return [ordered[b, : sizes[b]].tolist() for b in range(ordered.shape[0])], totals[inverse]


def log_partition_batch(emissions: npt.ArrayLike, lengths: npt.ArrayLike, crf: CRFParams) -> FloatArray:
    """:func:`log_partition` of each right-padded sequence: ``[B]``."""
    batch, inverse = _check_batch(emissions, lengths, crf)
    return log_partition_sorted(batch, crf)[inverse]


def marginals_batch(emissions: npt.ArrayLike, lengths: npt.ArrayLike, crf: CRFParams) -> FloatArray:
    """:func:`marginals` of each right-padded sequence: ``[B, T, L]``, rows of padding 0."""
    batch, inverse = _check_batch(emissions, lengths, crf)
    return marginals_sorted(batch, crf)[inverse]
