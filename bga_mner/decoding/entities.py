"""Per-word emissions -> entities with character spans into the original post.

:func:`decode_batch` decodes many posts in one vectorised CRF pass (what the worker calls per
batch); :func:`decode_words` is the same code with one post.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bga_mner.decoding.bio import bio_spans, split_tag
from bga_mner.decoding.crf import CRFParams, SortedBatch, marginals_sorted, viterbi_sorted
from bga_mner.preprocessing.words import Word

__all__ = ["Entity", "decode_batch", "decode_words"]


@dataclass(frozen=True)
class Entity:
    """One entity of a post; ``text == post[start:end]`` (Python str offsets)."""

    text: str
    type: str
    start: int
    end: int
    score: float


def decode_words(
    text: str, words: list[Word], word_emissions: npt.ArrayLike, labels: list[str], crf: CRFParams
) -> list[Entity]:
    """Viterbi-decode the words, read entities leniently (seqeval) and score them.

    ``score`` is the mean posterior marginal of the entity's tags along the Viterbi path: a
    calibrated-ish confidence the worker can threshold. Rows of NaN (words without subwords,
    see :mod:`bga_mner.decoding.windows`) are left out of the chain and count as ``O``; an
    entity's span still covers such a word when it lies between two of the entity's words.
    """
    return decode_batch([text], [words], [word_emissions], labels, crf)[0]


def decode_batch(
    texts: Sequence[str],
    words: Sequence[Sequence[Word]],
    word_emissions: Sequence[npt.ArrayLike],
    labels: Sequence[str],
    crf: CRFParams,
) -> list[list[Entity]]:
    """:func:`decode_words` of every post (``[n_words, L]`` emissions each), in order.

    All posts go through one Viterbi pass; the forward-backward pass for the scores runs only on
    posts whose path has an entity (most tweets have none), which changes no result.
    """
    if not len(texts) == len(words) == len(word_emissions):
        raise ValueError(
            f"{len(texts)} texts, {len(words)} word lists and {len(word_emissions)} emission arrays"
        )
    if len(labels) != crf.num_labels:
        raise ValueError(f"labels ({len(labels)}) and CRF ({crf.num_labels}) disagree")
    if not texts:
        return []
    per_post = [np.asarray(e, dtype=np.float64) for e in word_emissions]
    for index, (post_words, emissions) in enumerate(zip(words, per_post, strict=True)):
        where = f"post {index}: " if len(texts) > 1 else ""
        if emissions.ndim != 2 or emissions.shape[0] != len(post_words):
            raise ValueError(
                f"{where}need one emission row per word: {len(post_words)} words, emissions {emissions.shape}"
            )
        if emissions.shape[1] != len(labels):
            raise ValueError(
                f"{where}labels ({len(labels)}), emissions ({emissions.shape[1]}) and CRF "
                f"({crf.num_labels}) disagree"
            )

    packed = _pack(per_post)
    batch, order = packed.batch, packed.order

    paths, _ = viterbi_sorted(batch, crf)
    on_entity = np.array([split_tag(label)[0] != "O" for label in labels])[paths] & batch.valid
    tagged = np.flatnonzero(on_entity.any(axis=1))
    results: list[list[Entity]] = [[] for _ in texts]
    if tagged.size == 0:
        return results
    posterior = marginals_sorted(batch.subset(tagged), crf)
    on_path = np.take_along_axis(posterior, paths[tagged][:, :, None], axis=2)[:, :, 0]
    # Leading and trailing O tags change no span: read BIO only between the first and last entity tag.
    first_tag = on_entity[tagged].argmax(axis=1).tolist()
    stop_tag = (on_entity.shape[1] - on_entity[tagged][:, ::-1].argmax(axis=1)).tolist()
    for row, sorted_index in enumerate(tagged.tolist()):
        post = int(order[sorted_index])
        low, high = first_tag[row], stop_tag[row]
        tags = [labels[label] for label in paths[sorted_index, low:high].tolist()]
        text, post_words, entities = texts[post], words[post], results[post]
        kept_words = packed.kept_words(post)
        for first, stop, entity_type in bio_spans(tags):
            first, stop = first + low, stop + low
            start, end = post_words[kept_words[first]].start, post_words[kept_words[stop - 1]].end
            # == float(np.mean(...)) bit for bit: the same sum, divided once
            confidence = float(on_path[row, first:stop].sum()) / (stop - first)
            entities.append(Entity(text[start:end], entity_type, start, end, confidence))
    return results


@dataclass(frozen=True)
class _Packed:
    """The CRF input of a batch of posts and the way back from it to each post's words."""

    batch: SortedBatch
    order: npt.NDArray[np.intp]  # order[i]: the post in sorted row i
    kept: npt.NDArray[np.bool_]  # over the word rows of all posts: has emissions
    starts: npt.NDArray[np.intp]  # [posts + 1]: each post's first word row

    def kept_words(self, post: int) -> Sequence[int]:
        """Word indices of the post's CRF positions (all its words unless some had no subwords)."""
        kept = self.kept[self.starts[post] : self.starts[post + 1]]
        return range(kept.size) if kept.all() else np.flatnonzero(kept).tolist()


def _pack(per_post: list[npt.NDArray[np.float64]]) -> _Packed:
    """Words without subwords (NaN rows) leave the chain; the rest go right-padded, longest first."""
    rows = np.concatenate(per_post) if len(per_post) > 1 else per_post[0]
    kept = np.isfinite(rows).all(axis=1)
    word_counts = np.array([len(e) for e in per_post], dtype=np.intp)
    starts = np.concatenate([[0], np.cumsum(word_counts)]).astype(np.intp)
    if len(per_post) == 1:  # decode_words: nothing to pad or sort
        scores = rows[kept][None]
        batch = SortedBatch.build(scores, np.array([scores.shape[1]], dtype=np.intp))
        return _Packed(batch, np.zeros(1, dtype=np.intp), kept, starts)
    kept_before = np.concatenate([[0], np.cumsum(kept)]).astype(np.intp)
    lengths = kept_before[starts[1:]] - kept_before[starts[:-1]]
    order = np.argsort(-lengths, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    post_of_row = np.repeat(np.arange(len(per_post)), word_counts)
    position = kept_before[:-1] - kept_before[starts[:-1]][post_of_row]
    scores = np.zeros((len(per_post), int(lengths.max(initial=0)), rows.shape[1]), dtype=np.float64)
    scores[rank[post_of_row[kept]], position[kept]] = rows[kept]
    return _Packed(SortedBatch.build(scores, lengths[order]), order, kept, starts)
