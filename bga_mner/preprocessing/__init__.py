"""Text -> model inputs, the one place training and serving share (see docs/contract.md)."""

from __future__ import annotations

from bga_mner.preprocessing.batching import pad_batch
from bga_mner.preprocessing.casing import NUM_CASING_CLASSES, Casing, casing_class
from bga_mner.preprocessing.encoder import EncodedWindow, SubwordEncoder
from bga_mner.preprocessing.words import PRETOKENIZER_ID, Word, split_words

__all__ = [
    "NUM_CASING_CLASSES",
    "PRETOKENIZER_ID",
    "Casing",
    "EncodedWindow",
    "SubwordEncoder",
    "Word",
    "casing_class",
    "pad_batch",
    "split_words",
]
