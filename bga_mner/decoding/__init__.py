"""Emissions -> entities, numpy only: the same decoding in evaluation and serving (docs/contract.md)."""

from __future__ import annotations

from bga_mner.decoding.bio import bio_spans, repair_bio, split_tag
from bga_mner.decoding.crf import (
    CRFParams,
    log_partition,
    log_partition_batch,
    marginals,
    marginals_batch,
    viterbi,
    viterbi_batch,
)
from bga_mner.decoding.entities import Entity, decode_batch, decode_words
from bga_mner.decoding.windows import gather_word_emissions

__all__ = [
    "CRFParams",
    "Entity",
    "bio_spans",
    "decode_batch",
    "decode_words",
    "gather_word_emissions",
    "log_partition",
    "log_partition_batch",
    "marginals",
    "marginals_batch",
    "repair_bio",
    "split_tag",
    "viterbi",
    "viterbi_batch",
]
