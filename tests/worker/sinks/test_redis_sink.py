"""The Redis sink against a real Redis: records, replay-safe trending counts and the results stream."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from bga_mner.decoding import Entity
from bga_mner.errors import RejectedError, TransientError
from bga_mner.results import bucket_start
from bga_mner.stack.local import LocalStack
from bga_mner.tagging import TaggedPost
from worker.observability.metrics import WorkerMetrics
from worker.settings import RedisSettings
from worker.sinks.redis_sink import (
    RedisSink,
    SinkRecord,
    SinkRejected,
    SinkUnavailable,
    is_permanent,
    redis_client,
)

BUCKET = int(time.time() // 300 * 300) - 3600  # an hour ago, 300 s buckets
T0 = datetime.fromtimestamp(BUCKET + 90, UTC)


@pytest.fixture
def client(local_stack: LocalStack) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(local_stack.redis_url)
    yield connection
    connection.close()


@pytest.fixture
def sink(client: redis.Redis) -> RedisSink:
    """A fresh key prefix per test, so tests share one Redis without seeing each other's keys."""
    return RedisSink(client, RedisSettings(key_prefix=f"test-{uuid.uuid4().hex[:8]}", stream_maxlen=1000))


def _entity(text: str, type_: str, start: int = 0) -> Entity:
    return Entity(text=text, type=type_, start=start, end=start + len(text), score=0.875)


def _record(
    post_id: str, entities: list[Entity], offset: int, created_at: datetime | None = T0
) -> SinkRecord:
    return SinkRecord(
        tagged=TaggedPost(post_id=post_id, entities=entities, model_version="3"),
        topic="posts",
        partition=1,
        offset=offset,
        kafka_timestamp_ms=int(T0.timestamp() * 1000),
        created_at=created_at,
    )


def _batch() -> list[SinkRecord]:
    return [
        _record("p1", [_entity("Taylor Swift", "PER"), _entity("London", "LOC", 30)], 10),
        _record("p2", [_entity("TAYLOR  SWIFT", "PER"), _entity("taylor swift", "PER", 20)], 11),
        _record("p3", [], 12),
    ]


@pytest.mark.integration
def test_writes_records_counts_and_stream(sink: RedisSink, client: redis.Redis) -> None:
    assert sink.write_batch(_batch()) == 3

    record = sink.reader.record("p1")
    assert record is not None
    assert record["entities"] == [
        {"text": "Taylor Swift", "type": "PER", "start": 0, "end": 12, "score": 0.875},
        {"text": "London", "type": "LOC", "start": 30, "end": 36, "score": 0.875},
    ]
    assert record["model_version"] == "3"
    assert (record["topic"], record["partition"], record["offset"]) == ("posts", 1, 10)
    assert record["created_at"] == T0.isoformat()
    assert abs((datetime.fromisoformat(record["processed_at"]) - datetime.now(UTC)).total_seconds()) < 60
    assert 0 < client.ttl(sink.keys.post("p1")) <= sink.settings.record_ttl_seconds
    assert sink.reader.record("p3") is not None and sink.reader.record("p3")["entities"] == []  # type: ignore[index]

    # Mentions are normalised; a post mentioning an entity twice counts once.
    assert sink.reader.top_trending(BUCKET) == [("PER", "taylor swift", 2), ("LOC", "london", 1)]
    assert sink.reader.buckets() == [BUCKET]
    assert 0 < client.ttl(sink.keys.trending(BUCKET)) <= sink.settings.trending_ttl_seconds

    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(sink.keys.stream)  # type: ignore[assignment]
    assert [fields[b"id"] for _, fields in entries] == [b"p1", b"p2", b"p3"]
    assert json.loads(entries[0][1][b"entities"])[0]["text"] == "Taylor Swift"


@pytest.mark.integration
def test_replaying_a_batch_changes_no_count_and_no_stream(sink: RedisSink, client: redis.Redis) -> None:
    sink.write_batch(_batch())
    counts = sink.reader.top_trending(BUCKET)
    stream_length = client.xlen(sink.keys.stream)

    assert sink.write_batch(_batch()) == 0  # Kafka redelivered everything after the last commit
    assert sink.reader.top_trending(BUCKET) == counts
    assert client.xlen(sink.keys.stream) == stream_length == 3
    assert sink.reader.record("p1") is not None


@pytest.mark.integration
def test_a_duplicated_post_is_counted_once(sink: RedisSink, client: redis.Redis) -> None:
    """The same post id produced twice (another offset), inside one batch and across batches."""
    first = _record("dup", [_entity("Paris", "LOC")], 20)
    again = _record("dup", [_entity("Paris", "LOC")], 21)
    assert sink.write_batch([first, again]) == 1
    assert sink.write_batch([_record("dup", [_entity("Paris", "LOC")], 99)]) == 0
    assert sink.reader.top_trending(BUCKET) == [("LOC", "paris", 1)]
    assert client.xlen(sink.keys.stream) == 1
    assert client.get(sink.keys.marker("dup")) == b"posts/1/20"
    assert sink.reader.record("dup")["offset"] == 99  # type: ignore[index]  # the record shows the latest


@pytest.mark.integration
def test_an_older_version_finishing_later_never_overwrites_a_newer_one(sink: RedisSink) -> None:
    """Two batches in flight: the edit at offset 41 is written first, the original (offset 40) after it."""
    edited = _record("edited", [_entity("Berlin", "LOC")], 41)
    original = _record("edited", [_entity("Bonn", "LOC")], 40)
    sink.write_batch([edited])
    sink.write_batch([original])
    stored = sink.reader.record("edited")
    assert stored is not None and stored["offset"] == 41 and stored["entities"][0]["text"] == "Berlin"
    later_partition = dataclasses.replace(original, partition=2, offset=3)
    sink.write_batch([later_partition])  # (2, 3) > (1, 41): the highest (partition, offset) wins
    assert sink.reader.record("edited")["offset"] == 3  # type: ignore[index]


@pytest.mark.integration
def test_bucket_falls_back_to_the_kafka_timestamp(sink: RedisSink) -> None:
    late = T0 + timedelta(minutes=5)
    record = SinkRecord(
        tagged=TaggedPost("k1", [_entity("NASA", "ORG")], "3"),
        topic="posts",
        partition=0,
        offset=1,
        kafka_timestamp_ms=int(late.timestamp() * 1000),
    )
    sink.write_batch([record, _record("k2", [_entity("NASA", "ORG")], 2)])
    assert sink.reader.top_trending(BUCKET + 300) == [("ORG", "nasa", 1)]
    assert sink.reader.top_trending(BUCKET) == [("ORG", "nasa", 1)]
    assert sink.reader.buckets() == [BUCKET, BUCKET + 300]


@pytest.mark.integration
def test_posts_older_than_the_trending_ttl_are_stored_but_not_counted(
    sink: RedisSink, client: redis.Redis
) -> None:
    old = datetime.fromtimestamp(time.time() - sink.settings.trending_ttl_seconds - 600, UTC)
    assert sink.write_batch([_record("old", [_entity("Rome", "LOC")], 5, created_at=old)]) == 1
    assert sink.reader.record("old") is not None
    assert client.xlen(sink.keys.stream) == 1
    assert sink.reader.buckets() == []
    assert (
        client.exists(
            sink.keys.trending(bucket_start(old.timestamp(), sink.settings.trending_bucket_seconds))
        )
        == 0
    )


@pytest.mark.integration
def test_a_post_from_the_future_is_bucketed_no_later_than_now_plus_the_skew(
    sink: RedisSink, client: redis.Redis
) -> None:
    future = datetime.now(UTC) + timedelta(days=365)
    before = time.time()
    assert sink.write_batch([_record("future", [_entity("Mars", "LOC")], 7, created_at=future)]) == 1
    skew, width = sink.settings.max_clock_skew_s, sink.settings.trending_bucket_seconds
    latest = bucket_start(time.time() + skew, width)
    (bucket,) = sink.reader.buckets()
    assert bucket_start(before + skew, width) <= bucket <= latest
    assert sink.reader.top_trending(bucket) == [("LOC", "mars", 1)]
    expires_in = client.ttl(sink.keys.trending(bucket))
    assert 0 < expires_in <= sink.settings.trending_ttl_seconds + sink.settings.max_clock_skew_s
    assert sink.reader.record("future")["created_at"] == future.isoformat()  # type: ignore[index]


@pytest.mark.integration
def test_a_reply_that_can_never_succeed_is_rejected_not_retried(sink: RedisSink, client: redis.Redis) -> None:
    """Another application's string under our stream key: WRONGTYPE on every attempt."""
    client.set(sink.keys.stream, "not a stream")
    metrics = WorkerMetrics()
    own = RedisSink(client, sink.settings, metrics)
    with pytest.raises(SinkRejected, match="WRONGTYPE") as info:
        own.write_batch(_batch())
    assert not isinstance(info.value, SinkUnavailable)
    assert 'bga_mner_errors_total{stage="redis"} 1.0' in metrics.exposition().decode()


def test_the_loop_does_not_retry_a_rejected_write() -> None:
    """The loop retries ``TransientError``s only and stops on a ``RejectedError`` (see worker.pipeline)."""
    assert issubclass(SinkRejected, RejectedError) and not issubclass(SinkRejected, TransientError)
    assert issubclass(SinkUnavailable, TransientError) and not issubclass(SinkUnavailable, RejectedError)


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        ("CROSSSLOT Keys in request don't hash to the same slot", True),
        ("MOVED 3999 127.0.0.1:6381", True),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", True),
        ("NOPERM User worker has no permissions to run the 'evalsha' command", True),
        ("ERR user_script:1: Script attempted to access nonexistent global variable 'x'", True),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", False),
        ("LOADING Redis is loading the dataset in memory", False),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", False),
        ("TRYAGAIN Multiple keys request during rehashing of slot", False),
        ("CLUSTERDOWN The cluster is down", False),
        ("READONLY You can't write against a read only replica.", False),
        ("OOM command not allowed when used memory > 'maxmemory'.", False),
        ("NOSCRIPT No matching script. Please use EVAL.", False),
    ],
)
def test_error_replies_are_told_apart(reply: str, permanent: bool) -> None:
    """Parsed by redis-py's own reply parser, as a real reply would be."""
    from redis._parsers.base import BaseParser

    error = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
    assert isinstance(error, redis.RedisError)  # LOADING is a ConnectionError in redis-py
    assert is_permanent(error) is permanent
    assert is_permanent(redis.ConnectionError("Connection refused")) is False
    assert is_permanent(redis.TimeoutError("Timeout reading from socket")) is False


@pytest.mark.integration
def test_metrics_observe_redis_and_end_to_end_latency(client: redis.Redis) -> None:
    metrics = WorkerMetrics()
    sink = RedisSink(client, RedisSettings(key_prefix=f"test-{uuid.uuid4().hex[:8]}"), metrics)
    sink.write_batch(_batch())
    exposition = metrics.exposition().decode()
    assert "bga_mner_redis_latency_seconds_count 1.0" in exposition
    assert "bga_mner_end_to_end_latency_seconds_count 3.0" in exposition


def test_unreachable_redis_raises_sink_unavailable() -> None:
    from bga_mner.stack.ports import free_ports

    (port,) = free_ports(1)
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
    metrics = WorkerMetrics()
    with pytest.raises(SinkUnavailable, match="3 records"):
        RedisSink(dead, metrics=metrics).write_batch(_batch())
    assert 'bga_mner_errors_total{stage="redis"} 1.0' in metrics.exposition().decode()
    assert RedisSink(dead).ping() is False


@pytest.mark.integration
def test_client_from_settings(local_stack: LocalStack) -> None:
    from pydantic import SecretStr

    by_url = redis_client(RedisSettings(url=SecretStr(local_stack.redis_url)))
    host, port = local_stack.redis_url.removeprefix("redis://").split("/")[0].split(":")
    by_host = redis_client(RedisSettings(host=host, port=int(port)))
    try:
        assert by_url.ping() and by_host.ping()
        assert RedisSink(by_url).ping()
    finally:
        by_url.close()
        by_host.close()


def _own_redis(tmp_path: Path, *extra: str) -> Iterator[int]:
    """A redis-server of the test's own on a free port, stopped afterwards."""
    from bga_mner.stack.ports import free_ports, is_listening
    from bga_mner.stack.redis import redis_binary

    (port,) = free_ports(1)
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*argv, *extra, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not is_listening(port, "127.0.0.1"):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A Redis of this test's own that requires a password (the shared one has none)."""
    password = "s3cret-" + uuid.uuid4().hex
    for port in _own_redis(tmp_path, "--requirepass", password):
        yield port, password


def _spin(client: redis.Redis) -> None:
    """Run a script that never ends, until SCRIPT KILL ends it with an error reply."""
    with contextlib.suppress(redis.ResponseError):
        client.execute_command("EVAL", "while true do end", 0)  # type: ignore[no-untyped-call]


@pytest.fixture
def own_redis_port(tmp_path: Path) -> Iterator[int]:
    """A Redis of the test's own that answers BUSY 50 ms into a long script."""
    yield from _own_redis(tmp_path, "--busy-reply-threshold", "50")


@pytest.mark.integration
def test_a_busy_redis_is_unavailable_not_rejected(own_redis_port: int) -> None:
    """A real BUSY reply: another client's endless script holds the server."""
    client = redis.Redis(port=own_redis_port, socket_timeout=5)
    blocker = redis.Redis(port=own_redis_port, socket_timeout=30)
    spinning = threading.Thread(target=_spin, args=(blocker,), daemon=True)
    spinning.start()
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(SinkUnavailable, match="BUSY"):
            while time.monotonic() < deadline:  # until the script has started and passed 50 ms
                RedisSink(client).write_batch(_batch())
                time.sleep(0.02)
    finally:
        while spinning.is_alive():
            with contextlib.suppress(redis.ResponseError):  # not running yet, or already killed
                client.execute_command("SCRIPT", "KILL")  # type: ignore[no-untyped-call]
            spinning.join(timeout=0.5)
        client.close()
        blocker.close()
