"""The loop's guarantees against the real broker and Redis: outages, backpressure, rebalance, DLQ limit.

The tagger here is a small rule (capitalised words are entities) that can be made slow or
unavailable on purpose, which a real Triton cannot be on cue; the real model path is covered by
test_worker_end_to_end.py. Everything else (consumer group, commits, DLQ producer, Redis sink,
Lua script) is the production code against real services.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from bga_mner.decoding import Entity
from bga_mner.inference import InferenceRejected, InferenceUnavailable
from bga_mner.posts import Post
from bga_mner.stack.local import LocalStack
from bga_mner.tagging import PostError, TaggedPost, entity_to_dict
from tests.integration.worker_support import (
    RunnerThread,
    build_runner,
    captured_logs,
    committed_offsets,
    counter_value,
    end_offsets,
    expected_trending,
    make_posts,
    produce,
    produce_posts,
    read_topic,
    stack_worker_settings,
    trending_counts,
    wait_until,
)
from tests.worker.pipeline.fakes import SimpleTagger
from worker.kafka.dead_letter import HEADER_OFFSET, HEADER_REASON, HEADER_VALUE_DROPPED
from worker.pipeline.runner import SHUTDOWN_OVERRUN_S, ExitCode
from worker.settings import WorkerSettings
from worker.sinks.redis_sink import RedisSink, SinkRecord, SinkUnavailable

pytestmark = pytest.mark.integration

_CAPITALISED = re.compile(r"\b[A-Z][a-z]+\b")


def rule_entities(text: str) -> list[Entity]:
    return [
        Entity(text=m.group(), type="MISC", start=m.start(), end=m.end(), score=1.0)
        for m in _CAPITALISED.finditer(text)
    ]


class RuleTagger(SimpleTagger):
    """Capitalised words are entities; ``down`` makes it fail like an unreachable Triton."""

    def __init__(self, seconds_per_batch: float = 0.0, on_call: Callable[[], None] | None = None) -> None:
        self.down = threading.Event()
        self.calls = 0
        self.failures = 0
        self._seconds = seconds_per_batch
        self._on_call = on_call
        self._lock = threading.Lock()

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        with self._lock:
            self.calls += 1
        if self._on_call is not None:
            self._on_call()
        if self.down.is_set():
            with self._lock:
                self.failures += 1
            raise InferenceUnavailable("Triton is down (test)")
        time.sleep(self._seconds)
        return [TaggedPost(post.id, rule_entities(post.text), "rule-1") for post in posts]


@pytest.fixture
def settings_for(local_stack: LocalStack, new_topic: Callable[..., str]) -> Callable[..., WorkerSettings]:
    def make(partitions: int = 1, **sections: dict[str, Any]) -> WorkerSettings:
        return stack_worker_settings(
            local_stack, new_topic, key_prefix="t", partitions=partitions, sections=sections
        )

    return make


def all_committed(settings: WorkerSettings) -> Callable[[], bool]:
    topic = settings.kafka.topics[0]
    bootstrap = settings.kafka.bootstrap_servers[0]
    end = end_offsets(topic)
    return lambda: committed_offsets(bootstrap, settings.kafka.group_id, topic) == end


def test_nothing_is_committed_while_triton_is_down(settings_for: Callable[..., WorkerSettings]) -> None:
    settings = settings_for()
    posts = make_posts(40)
    produce_posts(settings.kafka.bootstrap_servers[0], settings.kafka.topics[0], posts)
    tagger = RuleTagger()
    tagger.down.set()
    runner, sink, _ = build_runner(settings, tagger)
    worker = RunnerThread(runner)
    try:
        wait_until(lambda: tagger.failures >= 5, 30, "the batch to be retried while Triton is down")
        bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
        assert committed_offsets(bootstrap, settings.kafka.group_id, topic) == {}
        assert all(sink.reader.record(p["id"]) is None for p in posts)

        tagger.down.clear()
        wait_until(all_committed(settings), 30, "offsets to reach the end once Triton is back")
        assert all(sink.reader.record(p["id"]) is not None for p in posts)
    finally:
        assert worker.stop() == ExitCode.OK


def test_backpressure_bounds_the_work_taken_from_kafka(settings_for: Callable[..., WorkerSettings]) -> None:
    settings = settings_for(
        kafka={"max_poll_records": 10},
        batching={"max_batch_size": 5, "max_wait_ms": 20, "max_in_flight_batches": 1},
    )
    posts = make_posts(150)
    produce_posts(settings.kafka.bootstrap_servers[0], settings.kafka.topics[0], posts)
    gaps: list[float] = []
    metrics_box: dict[str, Any] = {}

    def sample() -> None:  # called by the tagger: how far consumption ran ahead of finished work
        metrics = metrics_box["metrics"]
        consumed = counter_value(metrics.consumed, topic=settings.kafka.topics[0])
        gaps.append(consumed - counter_value(metrics.tagged))

    tagger = RuleTagger(seconds_per_batch=0.02, on_call=sample)
    runner, sink, metrics = build_runner(settings, tagger)
    metrics_box["metrics"] = metrics
    worker = RunnerThread(runner)
    try:
        wait_until(all_committed(settings), 60, "offsets to reach the end")
    finally:
        assert worker.stop() == ExitCode.OK
    assert all(sink.reader.record(p["id"]) is not None for p in posts)
    # Without pausing, the consumer would run ahead by up to the whole topic (150); with one batch
    # in flight it stays within one poll (10) + the batch in flight (5) + a partial batch (5).
    assert max(gaps) <= 20, max(gaps)
    assert len(gaps) >= 30
    assert max(gaps) > 0  # the samples are real


def test_rebalances_lose_and_double_count_nothing(settings_for: Callable[..., WorkerSettings]) -> None:
    """A second worker joins mid-stream, then the first leaves mid-stream: two rebalances.

    The first worker leaves before the end because the Tansu broker's group coordinator does not
    always complete the join of a member while another keeps consuming (it waits for a join
    that never finishes); a LeaveGroup settles it. Apache Kafka does not need this, and what the
    test checks (no post lost, none counted twice, offsets at the end) is the same either way.
    """
    settings = settings_for(
        partitions=3, batching={"max_batch_size": 10, "max_wait_ms": 20, "max_in_flight_batches": 2}
    )
    # Long enough (about 10 s for the first worker alone) that the stream outlasts the second
    # worker's join even on a loaded machine: a partition it gets must still hold work.
    posts = make_posts(2000)
    produce_posts(settings.kafka.bootstrap_servers[0], settings.kafka.topics[0], posts)
    first_tagger, second_tagger = RuleTagger(seconds_per_batch=0.1), RuleTagger(seconds_per_batch=0.05)
    first, sink, _ = build_runner(settings, first_tagger)
    with captured_logs("worker.pipeline.runner") as logs:
        workers = [RunnerThread(first)]
        try:
            wait_until(lambda: first_tagger.calls >= 3, 30, "the first worker to start tagging")
            second, _, _ = build_runner(settings, second_tagger)
            workers.append(RunnerThread(second))
            wait_until(lambda: second_tagger.calls >= 1, 30, "the second worker to get a partition")
            assert not all_committed(settings)(), "the stream ended before the rebalance: make it longer"
            # The first worker gave partitions up while it was consuming: the revoke path ran.
            wait_until(lambda: bool(revocations(logs)), 10, "the first worker to apply the revoke")
            assert workers[0].stop() == ExitCode.OK
            wait_until(all_committed(settings), 60, "offsets to reach the end")
        finally:
            codes = [worker.stop() for worker in workers]
    assert codes == [ExitCode.OK, ExitCode.OK]
    records = {p["id"]: sink.reader.record(p["id"]) for p in posts}
    assert all(records.values()), "lost posts"
    expected = expected_trending(
        (p["id"], [entity_to_dict(e) for e in rule_entities(p["text"])]) for p in posts
    )
    assert trending_counts(sink) == expected


def revocations(logs: Sequence[Any]) -> list[dict[str, Any]]:
    """The fields of the loop's "partitions revoked" lines that gave up at least one partition."""
    return [r.fields for r in list(logs) if r.getMessage() == "partitions revoked" and r.fields["partitions"]]


def test_dead_letter_limit_stops_the_worker_before_dead_lettering_everything(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    settings = settings_for(dlq={"max_consecutive": 3, "window": 100, "max_ratio": 0.9})
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    produce_posts(bootstrap, topic, make_posts(5))
    produce(bootstrap, topic, [(None, b"not json %d" % n) for n in range(5)])
    runner, _, _ = build_runner(settings, RuleTagger())
    code = RunnerThread(runner).join(timeout_s=60)
    assert code == ExitCode.DEAD_LETTER_LIMIT
    # The first two bad messages were dead-lettered; the third crossed the limit and is neither
    # dead-lettered nor committed, so a restart after the fix resumes at it.
    assert committed_offsets(bootstrap, settings.kafka.group_id, topic) == {0: 7}
    dead = read_topic(bootstrap, settings.kafka.dlq_topic, expected=2, timeout_s=10)
    assert [r.value for r in dead] == [b"not json 0", b"not json 1"]


class FlakySink:
    """The real RedisSink behind a switch that makes it fail the way an unreachable Redis does."""

    def __init__(self, sink: RedisSink) -> None:
        self.down = threading.Event()
        self.failures = 0
        self._sink = sink

    def write_batch(self, records: Sequence[SinkRecord]) -> int:
        if self.down.is_set():
            self.failures += 1
            raise SinkUnavailable("connection refused (test)")
        return self._sink.write_batch(records)


def test_nothing_is_committed_while_redis_is_down(settings_for: Callable[..., WorkerSettings]) -> None:
    settings = settings_for()
    posts = make_posts(30)
    produce_posts(settings.kafka.bootstrap_servers[0], settings.kafka.topics[0], posts)
    flakies: list[FlakySink] = []

    def wrap(sink: RedisSink) -> FlakySink:
        flakies.append(FlakySink(sink))
        return flakies[-1]

    runner, sink, metrics = build_runner(settings, RuleTagger(), wrap)
    (flaky,) = flakies
    flaky.down.set()  # the loop's sink, switched off and on
    worker = RunnerThread(runner)
    try:
        wait_until(lambda: flaky.failures >= 5, 30, "the batch to be retried while Redis is down")
        bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
        assert committed_offsets(bootstrap, settings.kafka.group_id, topic) == {}
        flaky.down.clear()
        wait_until(all_committed(settings), 30, "offsets to reach the end once Redis is back")
    finally:
        assert worker.stop() == ExitCode.OK
    assert all(sink.reader.record(p["id"]) is not None for p in posts)
    assert counter_value(metrics.tagged) == len(posts)


class BrokenTagger(SimpleTagger):
    """A model that rejects every input: retrying cannot help, and no post can be tagged."""

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        raise InferenceRejected("INVALID_ARGUMENT: unexpected shape (test)")


def test_a_model_that_rejects_everything_stops_the_worker_at_the_dead_letter_limit(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    """Each refused post is isolated (bisection) and dead-lettered; since all fail, the limit stops
    the worker before the message that crosses it is dead-lettered or committed."""
    settings = settings_for(dlq={"max_consecutive": 5})
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    posts = make_posts(20)
    produce_posts(bootstrap, topic, posts)
    runner, sink, _ = build_runner(settings, BrokenTagger())
    assert RunnerThread(runner).join(timeout_s=60) == ExitCode.DEAD_LETTER_LIMIT
    assert committed_offsets(bootstrap, settings.kafka.group_id, topic).get(0, 0) <= 4
    assert all(sink.reader.record(p["id"]) is None for p in posts)
    dead = read_topic(bootstrap, settings.kafka.dlq_topic, expected=4, timeout_s=10)
    assert {dict(r.headers)["bga.error.reason"] for r in dead} == {b"rejected_by_model"}


def test_interleaved_bad_messages_below_the_limit_never_stop_the_worker(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    """Never 3 bad messages in a row, but 2 of every 3 are bad and one poll takes them all: the limit
    is judged in consumption order, not with successes counted only after their batch finished."""
    settings = settings_for(dlq={"max_consecutive": 3, "window": 100, "max_ratio": 0.9})
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    posts = make_posts(40)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for n, post in enumerate(posts):
        messages.append((post["id"].encode(), json.dumps(post).encode()))
        messages += [(b"bad", b"not json %d" % n), (b"bad", b'{"text": "no id"}')]
    produce(bootstrap, topic, messages, partition=0)
    runner, sink, _ = build_runner(settings, RuleTagger())
    worker = RunnerThread(runner)
    try:
        wait_until(all_committed(settings), 60, "offsets to pass every message")
    finally:
        assert worker.stop() == ExitCode.OK
    assert all(sink.reader.record(p["id"]) is not None for p in posts)
    dead = read_topic(bootstrap, settings.kafka.dlq_topic, expected=80)
    assert len(dead) == 80


def test_tombstones_are_done_and_counted_without_a_dead_letter(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    settings = settings_for()
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    posts = make_posts(6)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for post in posts:
        messages += [(post["id"].encode(), json.dumps(post).encode()), (post["id"].encode(), None)]
    produce(bootstrap, topic, messages, partition=0)
    runner, sink, metrics = build_runner(settings, RuleTagger())
    worker = RunnerThread(runner)
    try:
        wait_until(all_committed(settings), 60, "offsets to pass the tombstones")
    finally:
        assert worker.stop() == ExitCode.OK
    assert counter_value(metrics.tombstones, topic=topic) == len(posts)
    assert counter_value(metrics.dead_lettered, reason="tombstone") == 0
    assert read_topic(bootstrap, settings.kafka.dlq_topic, expected=0, timeout_s=2) == []
    assert all(sink.reader.record(p["id"]) is not None for p in posts)


def test_a_dead_letter_over_one_mib_does_not_stop_the_worker(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    """kafka-python's producer refuses records over its max_request_size (1 MiB by default) in send()."""
    settings = settings_for()
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    posts = make_posts(4)
    big = b'{"id": "big", "text": "' + b"x" * (2 * 1024 * 1024)  # unterminated: invalid JSON
    messages: list[tuple[bytes | None, bytes | None]] = [
        (p["id"].encode(), json.dumps(p).encode()) for p in posts
    ]
    messages.insert(2, (b"big", big))
    produce(bootstrap, topic, messages, partition=0)
    runner, sink, _ = build_runner(settings, RuleTagger())
    worker = RunnerThread(runner)
    try:
        wait_until(all_committed(settings), 60, "offsets to pass the large dead letter")
    finally:
        assert worker.stop() == ExitCode.OK
    [dead] = read_topic(bootstrap, settings.kafka.dlq_topic, expected=1)
    headers = dict(dead.headers)
    assert headers[HEADER_OFFSET] == b"2" and headers[HEADER_REASON] == b"invalid_json"
    assert dead.value == big or (HEADER_VALUE_DROPPED in headers and dead.value == b"")
    assert all(sink.reader.record(p["id"]) is not None for p in posts)


def test_shutdown_is_bounded_when_a_batch_outlasts_the_grace_period(
    settings_for: Callable[..., WorkerSettings],
) -> None:
    """A Triton call cannot be interrupted: the worker gives up on it and exits within the documented
    bound (grace + SHUTDOWN_OVERRUN_S) instead of outlasting Kubernetes' termination grace period."""
    settings = settings_for(batching={"max_batch_size": 4, "max_wait_ms": 10, "max_in_flight_batches": 1})
    settings = settings.model_copy(update={"shutdown_grace_s": 1.0})
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    produce_posts(bootstrap, topic, make_posts(8))
    produce(bootstrap, topic, [(b"bad", b"not json")])
    tagger = RuleTagger(seconds_per_batch=8.0)
    runner, _, _ = build_runner(settings, tagger)
    worker = RunnerThread(runner)
    wait_until(lambda: tagger.calls >= 1, 30, "the first batch to reach the tagger")
    started = time.monotonic()
    assert worker.stop(timeout_s=30) == ExitCode.OK
    assert time.monotonic() - started <= settings.shutdown_grace_s + SHUTDOWN_OVERRUN_S
    assert committed_offsets(bootstrap, settings.kafka.group_id, topic).get(0, 0) < 9
