"""Tagged posts into Redis: per-post records, replay-safe trending counts and a results stream.

The worker is at-least-once: after a crash or a rebalance, Kafka redelivers everything after the
last commit, so a batch may be written twice. Records are overwritten (idempotent by nature); the
counts and the stream are not, so one Lua script per batch sets a per-post marker with ``SET NX``
and only a post that set it is counted and appended. The script runs atomically (no reader sees
half a batch; a write script is refused up front when Redis is out of memory, and a dropped
connection loses the whole call), and the loop commits offsets only after it returns. Retrying a
failed batch is always safe: the markers make every post count once whatever was written before.
Key schema: docs/redis.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from bga_mner.errors import RejectedError, TransientError
from bga_mner.results import ResultKeys, ResultsReader, bucket_start, trending_member
from bga_mner.tagging import TaggedPost, entity_to_dict
from worker.errors import WorkerError
from worker.settings import RedisSettings

if TYPE_CHECKING:
    from worker.observability.metrics import WorkerMetrics

# KEYS: [1] results stream, [2] index of trending buckets, then per record: post key, marker key, bucket key.
# ARGV: [1] record TTL, [2] trending TTL, [3] stream MAXLEN, [4] now (epoch s), then one JSON payload
# per record.
_WRITE_BATCH = """
local record_ttl = tonumber(ARGV[1])
local trending_ttl = tonumber(ARGV[2])
local maxlen = ARGV[3]
local now = tonumber(ARGV[4])
local appended = 0
for i = 1, #ARGV - 4 do
  local base = 2 + (i - 1) * 3
  local post_key, marker_key, bucket_key = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local r = cjson.decode(ARGV[4 + i])
  if #r.fields > 0 then
    -- The record of the highest (partition, offset) wins: with several batches in flight, an older
    -- version of an edited post may finish after a newer one and must not overwrite it.
    local stored = redis.call('HMGET', post_key, 'partition', 'offset')
    local sp, so = tonumber(stored[1]), tonumber(stored[2])
    if not sp or not so or sp < r.partition or (sp == r.partition and so <= r.offset) then
      redis.call('DEL', post_key)
      redis.call('HSET', post_key, unpack(r.fields))
      redis.call('EXPIRE', post_key, record_ttl)
    end
  end
  if redis.call('SET', marker_key, r.source, 'NX', 'EX', record_ttl) then
    if #r.members > 0 and r.bucket + trending_ttl > now then
      for _, member in ipairs(r.members) do
        redis.call('ZINCRBY', bucket_key, 1, member)
      end
      redis.call('EXPIREAT', bucket_key, r.bucket + trending_ttl)
      redis.call('ZADD', KEYS[2], r.bucket, r.bucket)
    end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(r.stream))
    appended = appended + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - trending_ttl)
return appended
"""


# Error replies that describe the server's state at this moment (a failover, a long script, a
# cluster resharding, memory that eviction or TTLs will free), so a later attempt may succeed.
# Every other error reply (WRONGTYPE, CROSSSLOT, NOPERM, a script error...) describes the request
# and would fail the same way forever.
_TRANSIENT_REPLIES = frozenset(
    {"BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM", "NOREPLICAS"}
)
_TRANSIENT_REPLY_TYPES: tuple[type[redis.ResponseError], ...] = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # and MasterDownError
)


class SinkUnavailable(WorkerError, TransientError):
    """Redis did not take the batch; nothing of it may be committed. Retrying the batch is safe."""


class SinkRejected(WorkerError, RejectedError):
    """Redis refused the batch in a way no retry can fix (e.g. WRONGTYPE, CROSSSLOT, a script error).

    Deliberately not a ``SinkUnavailable``: the loop retries those forever, and it treats any other
    exception from a batch as fatal, stopping the worker with the reason instead of spinning.
    The cause is the deployment (a key prefix shared with other data, Redis Cluster without a
    hash-tag prefix, an ACL without EVALSHA), never one post.
    """


@dataclass(frozen=True)
class SinkRecord:
    tagged: TaggedPost
    topic: str
    partition: int
    offset: int
    kafka_timestamp_ms: int | None
    created_at: datetime | None = None  # the post's own time; the trending bucket prefers it


class RedisSink:
    """Writes batches of tagged posts with one atomic script each (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._client = client
        self.settings = settings if settings is not None else RedisSettings()
        self._metrics = metrics
        self._script = client.register_script(_WRITE_BATCH)
        self.keys = ResultKeys(self.settings.key_prefix)
        self.reader = ResultsReader(
            client, self.settings.key_prefix
        )  # for tools and tests; never used to write

    def write_batch(self, records: Sequence[SinkRecord]) -> int:
        """Write the batch in one atomic script; returns how many posts were new (counted and streamed).

        Raises ``SinkUnavailable``; the batch must then be retried (which is safe) before committing.
        """
        if not records:
            return 0
        now = time.time()
        processed_at = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds")
        keys: list[str] = [self.keys.stream, self.keys.bucket_index]
        payloads: list[str] = []
        for record in records:
            bucket = bucket_start(self._event_time(record, now), self.settings.trending_bucket_seconds)
            post_id = record.tagged.post_id
            keys += [self.keys.post(post_id), self.keys.marker(post_id), self.keys.trending(bucket)]
            payloads.append(json.dumps(self._payload(record, bucket, processed_at), ensure_ascii=False))
        args: list[Any] = [
            self.settings.record_ttl_seconds,
            self.settings.trending_ttl_seconds,
            self.settings.stream_maxlen,
            int(now),
            *payloads,
        ]
        started = time.perf_counter()
        try:
            appended = int(self._script(keys=keys, args=args))
        except redis.RedisError as exc:
            if self._metrics is not None:
                self._metrics.errors.labels(stage="redis").inc()
            if is_permanent(exc):
                raise SinkRejected(
                    f"Redis refused the write of {len(records)} records, and retrying cannot help "
                    f"(check docs/redis.md: key prefix, Redis Cluster, ACL): {type(exc).__name__}: {exc}"
                ) from exc
            raise SinkUnavailable(f"Redis write of {len(records)} records failed: {exc}") from exc
        if self._metrics is not None:
            acked = time.time()
            self._metrics.redis_latency_seconds.observe(time.perf_counter() - started)
            for record in records:
                if record.kafka_timestamp_ms is not None:
                    self._metrics.end_to_end_latency_seconds.observe(
                        max(0.0, acked - record.kafka_timestamp_ms / 1000)
                    )
        return appended

    def ping(self) -> bool:
        """For /readyz."""
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def _event_time(self, record: SinkRecord, now: float) -> float:
        """The post's time for trending, never later than ``now`` plus ``max_clock_skew_s``.

        Both the post's ``created_at`` and the Kafka timestamp come from producers; a future one is
        clamped to the latest plausible time rather than trusted (see ``max_clock_skew_s``).
        """
        if record.created_at is not None:
            created = record.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            event = created.timestamp()
        elif record.kafka_timestamp_ms is not None:
            event = record.kafka_timestamp_ms / 1000
        else:
            return now
        return min(event, now + self.settings.max_clock_skew_s)

    def _payload(self, record: SinkRecord, bucket: int, processed_at: str) -> dict[str, Any]:
        tagged = record.tagged
        entities = json.dumps([entity_to_dict(e) for e in tagged.entities], ensure_ascii=False)
        fields = {
            "id": tagged.post_id,
            "entities": entities,
            "model_version": tagged.model_version,
            "processed_at": processed_at,
            "topic": record.topic,
            "partition": str(record.partition),
            "offset": str(record.offset),
        }
        if record.kafka_timestamp_ms is not None:
            fields["kafka_timestamp_ms"] = str(record.kafka_timestamp_ms)
        if record.created_at is not None:
            fields["created_at"] = record.created_at.isoformat()
        members = sorted({trending_member(e.type, e.text) for e in tagged.entities})
        stream = {k: fields[k] for k in ("id", "entities", "model_version", "topic", "partition", "offset")}
        return {
            # Compact mode (store_records off) sends no fields, and the script writes no record.
            "fields": [item for pair in fields.items() for item in pair]
            if self.settings.store_records
            else [],
            "stream": [item for pair in stream.items() for item in pair],
            "members": members,
            "bucket": bucket,
            "partition": record.partition,
            "offset": record.offset,
            "source": f"{record.topic}/{record.partition}/{record.offset}",
        }


def is_permanent(error: redis.RedisError) -> bool:
    """Whether Redis refused the request itself, so that retrying it cannot succeed.

    Connection problems and timeouts are transient; so are the error replies of a server that is
    busy, loading, failing over or short of memory. Any other error reply is permanent.
    """
    if not isinstance(error, redis.ResponseError):
        return False
    if isinstance(error, _TRANSIENT_REPLY_TYPES):
        return False
    if isinstance(error, redis.exceptions.NoScriptError):
        return False  # the script cache was flushed between EVALSHA and its reload: a retry reloads it
    # redis-py strips the code of replies it knows (keeping it in status_code) and keeps it otherwise.
    code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    return code not in _TRANSIENT_REPLIES


def redis_client(settings: RedisSettings) -> redis.Redis:
    """A client from the worker's settings: URL (may carry credentials) or host/port, auth and TLS."""
    common: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "health_check_interval": 30,
    }
    tls: dict[str, Any] = {}
    if settings.tls or (settings.url is not None and settings.url.get_secret_value().startswith("rediss://")):
        tls = {
            "ssl_ca_certs": str(settings.ssl_cafile) if settings.ssl_cafile else None,
            "ssl_certfile": str(settings.ssl_certfile) if settings.ssl_certfile else None,
            "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        }
    if settings.url is not None:
        return redis.Redis.from_url(settings.url.get_secret_value(), **common, **tls)
    return redis.Redis(
        host=settings.host,
        port=settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        ssl=settings.tls,
        **common,
        **tls,
    )
