"""F1 of a *served* graph: gold-tokenised sentences through an ONNX graph and the serving CRF decoder.

The trainer scores the PyTorch module; what users get is the exported graph (lean, maybe int8). This
scores that graph the way evaluation scores the trainer's model (entity-level micro F1 in percent,
seqeval lenient, words without subwords tagged "O"), with the windows length-sorted and batched as the
worker batches them, so export can choose a precision by the F1 it will really serve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from bga_mner.decoding import CRFParams, gather_word_emissions, viterbi
from bga_mner.preprocessing import EncodedWindow, SubwordEncoder, pad_batch

if TYPE_CHECKING:
    from training.data.conll import Sentence

EmissionsFn = Callable[[Mapping[str, npt.NDArray[Any]]], npt.NDArray[Any]]
"""A padded batch (``pad_batch`` output) -> emissions ``[B, S, L]``: e.g. ``OnnxBackend.infer``."""


@dataclass(frozen=True)
class ServedScore:
    f1: float
    precision: float
    recall: float
    tags: list[list[str]]


def length_buckets(flat: Sequence[EncodedWindow], batch_size: int) -> list[list[int]]:
    """Window indices sorted by length and cut into batches, as the worker's tagger does."""
    order = sorted(range(len(flat)), key=lambda i: len(flat[i].input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def window_emissions(
    emissions_fn: EmissionsFn, flat: list[EncodedWindow], pad_id: int, batch_size: int = 32
) -> list[npt.NDArray[np.float32]]:
    """Emissions of every window, padding cut off."""
    outputs: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(flat)
    for batch in length_buckets(flat, batch_size):
        result = emissions_fn(pad_batch([flat[i] for i in batch], pad_id))
        for row, index in enumerate(batch):
            outputs[index] = np.asarray(result[row, : len(flat[index].input_ids)], dtype=np.float32)
    return outputs


def decode_tags(
    windows: list[EncodedWindow], emissions: list[npt.NDArray[np.float32]], labels: list[str], crf: CRFParams
) -> list[str]:
    """Gold-token tags as evaluation scores them: words without subwords are "O"."""
    word_emissions = gather_word_emissions(windows, emissions)
    kept = np.flatnonzero(np.isfinite(word_emissions).all(axis=1))
    tags = ["O"] * word_emissions.shape[0]
    path, _ = viterbi(word_emissions[kept], crf)
    for position, label in zip(kept, path, strict=True):
        tags[position] = labels[label]
    return tags


def served_tags(
    emissions_fn: EmissionsFn,
    sentences: Sequence[Sentence],
    encoder: SubwordEncoder,
    labels: list[str],
    crf: CRFParams,
    batch_size: int = 32,
) -> list[list[str]]:
    windows = encoder.encode_many([list(s.tokens) for s in sentences])
    flat = [w for post in windows for w in post]
    outputs = window_emissions(emissions_fn, flat, encoder.pad_id, batch_size)
    tags, cursor = [], 0
    for post in windows:
        tags.append(decode_tags(post, outputs[cursor : cursor + len(post)], labels, crf))
        cursor += len(post)
    return tags


def served_score(
    emissions_fn: EmissionsFn,
    sentences: Sequence[Sentence],
    encoder: SubwordEncoder,
    labels: list[str],
    crf: CRFParams,
    batch_size: int = 32,
) -> ServedScore:
    from training.evaluation.scores import score_tags

    tags = served_tags(emissions_fn, sentences, encoder, labels, crf, batch_size)
    scores = score_tags([list(s.labels) for s in sentences], tags)
    return ServedScore(scores.f1, scores.precision, scores.recall, tags)
