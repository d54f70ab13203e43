from __future__ import annotations

import numpy as np

from bga_mner.preprocessing import EncodedWindow, pad_batch


def window(ids: list[int]) -> EncodedWindow:
    return EncodedWindow(ids, [0] + [3] * (len(ids) - 2) + [0], [1], range(1))


def test_pads_to_the_longest_window() -> None:
    batch = pad_batch([window([101, 7, 102]), window([101, 7, 8, 9, 102])], pad_id=5)
    assert set(batch) == {"input_ids", "attention_mask", "casing_ids"}
    assert all(a.dtype == np.int64 and a.shape == (2, 5) for a in batch.values())
    np.testing.assert_array_equal(batch["input_ids"], [[101, 7, 102, 5, 5], [101, 7, 8, 9, 102]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(batch["casing_ids"], [[0, 3, 0, 0, 0], [0, 3, 3, 3, 0]])


def test_empty_batch() -> None:
    batch = pad_batch([], pad_id=0)
    assert all(a.shape == (0, 0) and a.dtype == np.int64 for a in batch.values())
