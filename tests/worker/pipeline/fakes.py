"""In-memory stand-ins for the stream loop's collaborators, so its unit tests run with no broker,
no threads and no sleeps: every rebalance, failure and batch completion happens when the test says.

- ``FakeBroker`` holds topics (lists of records per partition) and a group's committed offsets.
- ``FakeConsumer`` implements ``worker.pipeline.ports.Consumer`` over it: ``rebalance()`` queues a new
  assignment that the next ``poll`` applies, calling the listener the way kafka-python does.
- ``FakeDeadLetters`` records dead letters; ``flush_error`` makes the broker acknowledge none.
- ``ManualExecutor`` holds submitted batches until the test runs them; ``InlineExecutor`` runs at once.
- ``ScriptedTagger`` tags by rule and can be made to fail; ``MemorySink`` keeps what was written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from bga_mner.decoding import Entity
from bga_mner.inference import InferenceRejected
from bga_mner.posts import Post
from bga_mner.tagging import PostError, PreparedPost, TaggedPost
from worker.kafka.dead_letter import FlushResult, SourceMessage
from worker.sinks.redis_sink import SinkRecord

T = TypeVar("T")


def record(topic: str, partition: int, offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        leader_epoch=-1,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=None,
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=len(value) if value is not None else -1,
        serialized_header_size=-1,
    )


def post_json(post_id: str, text: str = "Obama visits Paris") -> bytes:
    return json.dumps({"id": post_id, "text": text}).encode()


class FakeBroker:
    def __init__(self) -> None:
        self.logs: dict[TopicPartition, list[ConsumerRecord]] = defaultdict(list)
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []

    def produce(self, topic: str, partition: int, value: bytes | None) -> ConsumerRecord:
        tp = TopicPartition(topic, partition)
        made = record(topic, partition, len(self.logs[tp]), value)
        self.logs[tp].append(made)
        return made

    def partitions(self, topic: str) -> list[TopicPartition]:
        return sorted((tp for tp in self.logs if tp.topic == topic), key=lambda tp: tp.partition)


class FakeConsumer:
    def __init__(self, broker: FakeBroker, max_poll_records: int = 500) -> None:
        self._broker = broker
        self._max = max_poll_records
        self._listener: ConsumerRebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._pending_assignment: set[TopicPartition] | None = None
        self.commit_error: KafkaError | None = None
        self.closed = False
        self.polls = 0
        self.on_poll: Callable[[int], None] | None = None  # called with the poll count, before polling
        self.poll_errors: list[KafkaError] = []  # raised by the next polls, one each (a broker outage)

    # -- test controls -----------------------------------------------------------------------------
    def rebalance(self, partitions: set[TopicPartition]) -> None:
        """The group's next assignment for this member, applied (with listener calls) by the next poll."""
        self._pending_assignment = set(partitions)

    # -- the Consumer protocol ---------------------------------------------------------------------
    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        self._listener = listener
        if self._pending_assignment is None:
            self._pending_assignment = {tp for topic in topics for tp in self._broker.partitions(topic)}

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, list[ConsumerRecord]]:
        del timeout_ms  # nothing ever blocks here
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        if self._pending_assignment is not None:
            self._apply_rebalance(self._pending_assignment)
            self._pending_assignment = None
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        budget = self._max
        for tp in sorted(self._assigned - self._paused, key=lambda tp: (tp.topic, tp.partition)):
            log = self._broker.logs[tp]
            start = self._positions[tp]
            taken = log[start : start + budget]
            if taken:
                out[tp] = list(taken)
                self._positions[tp] = start + len(taken)
                budget -= len(taken)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self._assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[partition] = offset

    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self._positions.get(partition)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self._broker.logs[partition])

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int | None = None) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self._broker.commits.append(plain)
        self._broker.committed.update(plain)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True

    def _apply_rebalance(self, new: set[TopicPartition]) -> None:
        revoked, added = self._assigned - new, new - self._assigned
        if revoked and self._listener is not None:
            self._listener.on_partitions_revoked(revoked)
        self._assigned = set(new)
        self._paused &= self._assigned
        for tp in added:
            self._positions[tp] = self._broker.committed.get(tp, 0)
        if added and self._listener is not None:
            self._listener.on_partitions_assigned(added)


class FakeDeadLetters:
    """The DLQ producer: ``sent`` holds (reason, record) of every dead letter, ``acked`` the flushed ones;
    while ``flush_error`` is set, the broker acknowledges nothing."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, SourceMessage]] = []
        self.acked: list[tuple[str, SourceMessage]] = []
        self.flush_error: KafkaError | None = None
        self.closed = False

    def send(self, message: SourceMessage, reason: str, detail: str) -> None:
        self.sent.append((reason, message))

    def flush(self, timeout_s: float | None = None) -> FlushResult:
        waiting = [(reason, message) for reason, message in self.sent if (reason, message) not in self.acked]
        if self.flush_error is not None:
            return FlushResult([], [(message, repr(self.flush_error)) for _, message in waiting])
        self.acked.extend(waiting)
        return FlushResult([message for _, message in waiting], [])

    def close(self, timeout_s: float | None = None) -> None:
        self.closed = True


class ManualExecutor(Executor):
    """Holds submitted calls until ``run_all``; a deterministic stand-in for the batch thread pool."""

    def __init__(self) -> None:
        self.queued: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self.queued.append((future, fn, args))
        return future

    def run_all(self) -> int:
        ran = 0
        while self.queued:
            future, fn, args = self.queued.pop(0)
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as error:
                    future.set_exception(error)
            ran += 1
        return ran

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for future, _, _ in self.queued:
                future.cancel()
            self.queued.clear()


class InlineExecutor(ManualExecutor):
    """Runs every batch the moment it is submitted."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future = super().submit(fn, *args)
        self.run_all()
        return future


class SimpleTagger:
    """The ``prepare``/``infer`` pair of ``bga_mner.tagging.Tagger`` over a test's ``tag_with_errors``."""

    def prepare(self, posts: Sequence[Post]) -> list[PreparedPost]:
        return [PreparedPost(post) for post in posts]

    def infer(self, prepared: Sequence[PreparedPost]) -> list[TaggedPost | PostError]:
        return self.tag_with_errors([one.post for one in prepared])

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        raise NotImplementedError


class ScriptedTagger(SimpleTagger):
    """Tags each capitalised word as a PER entity; ``fail_with`` makes the next calls raise it;
    ``rejects`` are post ids the model refuses (any request that contains one is rejected)."""

    def __init__(self) -> None:
        self.fail_with: BaseException | None = None
        self.fail_times = 0
        self.calls = 0
        self.untaggable: set[str] = set()  # post ids answered with a PostError
        self.rejects: set[str] = set()

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        self.calls += 1
        if self.fail_with is not None and self.fail_times > 0:
            self.fail_times -= 1
            raise self.fail_with
        refused = [post.id for post in posts if post.id in self.rejects]
        if refused:
            raise InferenceRejected(f"INVALID_ARGUMENT: cannot take {refused} (test)")
        out: list[TaggedPost | PostError] = []
        for post in posts:
            if post.id in self.untaggable:
                out.append(PostError(post.id, "undecodable_image", "scripted"))
                continue
            entities = [
                Entity(word, "PER", post.text.index(word), post.text.index(word) + len(word), 1.0)
                for word in post.text.split()
                if word[:1].isupper()
            ]
            out.append(TaggedPost(post.id, entities, "1"))
        return out


class MemorySink:
    def __init__(self) -> None:
        self.records: dict[str, SinkRecord] = {}
        self.writes = 0
        self.fail_with: BaseException | None = None
        self.fail_times = 0

    def write_batch(self, records: Sequence[SinkRecord]) -> int:
        if self.fail_with is not None and self.fail_times > 0:
            self.fail_times -= 1
            raise self.fail_with
        self.writes += 1
        for item in records:
            self.records[item.tagged.post_id] = item
        return len(records)
