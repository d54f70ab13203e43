"""The Redis key schema of the results (docs/redis.md): one definition for the writer and every reader.

The worker's sink writes these keys and the demo, the tests and users' own tools read them, so
the names, the bucket arithmetic and the trending member format are defined here once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_KEY_PREFIX = "bga"
_SPACES = re.compile(r"\s+")


def normalise_entity(text: str) -> str:
    """What counts as the same entity in trending: Unicode-normalised, case-folded, single-spaced."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def trending_member(entity_type: str, text: str) -> str:
    """The sorted-set member of an entity in a trending bucket: ``TYPE|normalised text``."""
    return f"{entity_type}|{normalise_entity(text)}"


def bucket_start(epoch_s: float, width_s: int) -> int:
    """The start (epoch seconds) of the trending bucket that holds time ``epoch_s``."""
    return int(epoch_s // width_s) * width_s


@dataclass(frozen=True)
class ResultKeys:
    """Key names under one prefix (``BGA_REDIS__KEY_PREFIX``)."""

    prefix: str = DEFAULT_KEY_PREFIX

    @property
    def stream(self) -> str:
        return f"{self.prefix}:results"

    @property
    def bucket_index(self) -> str:
        return f"{self.prefix}:trending:buckets"

    def post(self, post_id: str) -> str:
        return f"{self.prefix}:post:{post_id}"

    def marker(self, post_id: str) -> str:
        return f"{self.prefix}:counted:{post_id}"

    def trending(self, bucket: int) -> str:
        return f"{self.prefix}:trending:{bucket}"
