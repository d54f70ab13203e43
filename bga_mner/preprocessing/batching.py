"""Pad a batch of windows into the int64 arrays the model (ONNX, TensorRT, torch) takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bga_mner.preprocessing.encoder import EncodedWindow

__all__ = ["pad_batch"]


def pad_batch(windows: Sequence[EncodedWindow], pad_id: int) -> dict[str, npt.NDArray[np.int64]]:
    """Pad to the longest window in the batch (not to max_length), so short tweets stay cheap.

    Length bucketing (sorting windows by length before batching) is the caller's job.
    """
    length = max((len(w.input_ids) for w in windows), default=0)
    input_ids = np.full((len(windows), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(windows), length), dtype=np.int64)
    casing_ids = np.zeros((len(windows), length), dtype=np.int64)
    for row, window in enumerate(windows):
        n = len(window.input_ids)
        input_ids[row, :n] = window.input_ids
        attention_mask[row, :n] = 1
        casing_ids[row, :n] = window.casing_ids
    return {"input_ids": input_ids, "attention_mask": attention_mask, "casing_ids": casing_ids}
