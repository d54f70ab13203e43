"""Reading the results back from Redis through the documented key schema (docs/redis.md).

For the demo, the tests and users' tools; it never writes. Takes any redis-py client, so the
core does not depend on the ``redis`` package (the ``worker`` extra installs it).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from bga_mner.results.keys import DEFAULT_KEY_PREFIX, ResultKeys


class _Client(Protocol):
    def hgetall(self, name: str) -> Any: ...
    def zrevrange(self, name: str, start: int, end: int, withscores: bool = ...) -> Any: ...
    def zrange(self, name: str, start: int, end: int) -> Any: ...


class ResultsReader:
    def __init__(self, client: _Client, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._client = client
        self.keys = ResultKeys(key_prefix)

    def record(self, post_id: str) -> dict[str, Any] | None:
        """A post's record as written (entities decoded, partition and offset as ints), or None."""
        raw = self._client.hgetall(self.keys.post(post_id))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        record: dict[str, Any] = dict(fields)
        record["entities"] = json.loads(fields["entities"])
        record["partition"] = int(fields["partition"])
        record["offset"] = int(fields["offset"])
        return record

    def top_trending(self, bucket: int, count: int = 10) -> list[tuple[str, str, int]]:
        """The ``count`` most mentioned entities of a bucket as (type, normalised text, posts)."""
        rows = self._client.zrevrange(self.keys.trending(bucket), 0, count - 1, withscores=True)
        result = []
        for member, score in rows:
            entity_type, _, text = _text(member).partition("|")
            result.append((entity_type, text, int(score)))
        return result

    def buckets(self) -> list[int]:
        """Bucket starts that hold counts, oldest first."""
        return [int(_text(m)) for m in self._client.zrange(self.keys.bucket_index, 0, -1)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
