"""The output contract: the Redis key schema the worker writes and a reader for it (docs/redis.md)."""

from __future__ import annotations

from bga_mner.results.keys import (
    DEFAULT_KEY_PREFIX,
    ResultKeys,
    bucket_start,
    normalise_entity,
    trending_member,
)
from bga_mner.results.reader import ResultsReader

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "ResultKeys",
    "ResultsReader",
    "bucket_start",
    "normalise_entity",
    "trending_member",
]
