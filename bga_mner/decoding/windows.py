"""Stitch the model's per-window emissions back into one row per word of the post.

A long post is encoded as overlapping windows (``SubwordEncoder``); each word takes its
first-subword emission from the one window that *owns* it (where it has most context).

Words with no subword at all (U+FE0F alone, U+200B, a lone combining mark: the tokenizer's
normaliser deletes them) have no emission. They get a row of NaN, and :func:`decode_words`
leaves them out of the CRF chain and labels them ``O`` — an invisible character inside a name
then neither breaks the entity nor becomes one. Training does the same: such a word has no first
subword to carry a label, so it is simply not part of the CRF sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bga_mner.preprocessing.encoder import EncodedWindow

__all__ = ["gather_word_emissions"]


def gather_word_emissions(
    windows: Sequence[EncodedWindow], emissions_per_window: npt.ArrayLike | Sequence[npt.ArrayLike]
) -> npt.NDArray[np.float32]:
    """``[n_windows, S, L]`` emissions (S may include padding) -> ``[n_words, L]``.

    Rows of words without subwords are NaN. ``emissions_per_window`` may also be a list of
    ``[S_k, L]`` arrays when the windows were run in different batches.
    """
    if not windows:
        raise ValueError("a post has at least one window")
    if isinstance(emissions_per_window, np.ndarray):
        if emissions_per_window.ndim != 3:
            raise ValueError(f"emissions must be [n_windows, S, L], got shape {emissions_per_window.shape}")
        per_window = [np.asarray(e, dtype=np.float32) for e in emissions_per_window]
    elif isinstance(emissions_per_window, Sequence):
        per_window = [np.asarray(e, dtype=np.float32) for e in emissions_per_window]
    else:
        raise TypeError(f"emissions must be an array or a list of arrays, got {type(emissions_per_window)}")
    if len(per_window) != len(windows):
        raise ValueError(f"{len(windows)} windows but emissions for {len(per_window)}")
    num_labels = per_window[0].shape[-1]
    n_words = len(windows[0].word_index)
    gathered = np.full((n_words, num_labels), np.nan, dtype=np.float32)
    for window, emissions in zip(windows, per_window, strict=True):
        if (
            emissions.ndim != 2
            or emissions.shape[0] < len(window.input_ids)
            or emissions.shape[1] != num_labels
        ):
            raise ValueError(
                f"a window of {len(window.input_ids)} subwords needs emissions [>= {len(window.input_ids)}, "
                f"{num_labels}], got {emissions.shape}"
            )
        owned = np.arange(window.owned_words.start, window.owned_words.stop, window.owned_words.step)
        positions = np.asarray(window.word_index, dtype=np.intp)[owned]
        present = positions >= 0
        gathered[owned[present]] = emissions[positions[present]]
    return gathered
