"""The dead-letter queue never reports a dead letter as acknowledged that the broker did not acknowledge.

A fake producer plays the broker: it acknowledges, fails or never completes each record as told, so
every path (a failed ack, a timeout, a send that cannot even be handed over) is checked without a
broker; tests/reliability/ cuts a real broker's connection for the same promise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError

from tests.worker.pipeline.fakes import record
from worker.kafka.dead_letter import HEADER_VALUE_DROPPED, DeadLetterQueue


@dataclass
class FakeFuture:
    is_done: bool = False
    exception: BaseException | None = None

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None


@dataclass
class FakeProducer:
    """``outcomes`` says, per send in order, what the broker does: "ack", an exception, or "hang"."""

    outcomes: list[Any] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    futures: list[FakeFuture] = field(default_factory=list)
    block: BaseException | None = None  # send() itself raises this (metadata wait past max_block_ms)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> FakeFuture:
        if self.block is not None:
            raise self.block
        self.sent.append({"key": key, "value": value, "headers": dict(headers)})
        future = FakeFuture()
        self.futures.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        for future in self.futures:
            if future.is_done:
                continue
            outcome = self.outcomes.pop(0) if self.outcomes else "ack"
            if outcome == "hang":
                continue
            future.is_done = True
            future.exception = None if outcome == "ack" else outcome  # type: ignore[assignment]
        if any(not f.is_done for f in self.futures):
            raise KafkaTimeoutError("flush timed out (test)")

    def close(self, timeout: float | None = None) -> None:
        pass


def _queue(producer: FakeProducer) -> DeadLetterQueue:
    return DeadLetterQueue(producer, "posts.dlq", send_timeout_s=1.0)


def test_an_unacknowledged_dead_letter_stays_queued_and_is_never_reported_acknowledged() -> None:
    producer = FakeProducer(outcomes=["ack", NotLeaderForPartitionError("broker cut (test)"), "ack"])
    queue = _queue(producer)
    first, second, third = (record("posts", 0, offset, b"x") for offset in range(3))
    for message in (first, second, third):
        queue.send(message, "invalid_json", "test")
    result = queue.flush()
    assert result.acknowledged == [first, third]
    assert [m for m, _ in result.unacknowledged] == [second]
    assert "NotLeaderForPartitionError" in result.unacknowledged[0][1]
    assert queue.pending() == 1
    # The next flush (the shutdown's, say) sends it again and reports only what the broker acked now.
    producer.outcomes = [KafkaTimeoutError("still cut (test)")]
    again = queue.flush()
    assert again.acknowledged == [] and [m for m, _ in again.unacknowledged] == [second]
    producer.outcomes = ["ack"]
    assert queue.flush().acknowledged == [second]
    assert queue.pending() == 0
    assert len(producer.sent) == 5  # three sends, then the failed one twice more


def test_a_dead_letter_without_an_ack_in_time_is_waited_for_again() -> None:
    producer = FakeProducer(outcomes=["hang"])
    queue = _queue(producer)
    message = record("posts", 0, 7, b"x")
    queue.send(message, "schema", "test")
    result = queue.flush(timeout_s=0.01)
    assert result.acknowledged == [] and result.unacknowledged[0][1] == "no acknowledgement yet"
    assert queue.flush().acknowledged == [message]
    assert len(producer.sent) == 1  # still in flight: waited for, not sent twice


def test_a_send_the_producer_cannot_hand_over_is_kept_and_sent_later() -> None:
    producer = FakeProducer(block=KafkaTimeoutError("metadata not available after max_block_ms (test)"))
    queue = _queue(producer)
    message = record("posts", 0, 3, b"x")
    queue.send(message, "schema", "test")  # never raises: the loop must not crash on a broker outage
    result = queue.flush()
    assert result.acknowledged == [] and "not handed to the producer" in result.unacknowledged[0][1]
    producer.block = None
    assert queue.flush().acknowledged == [message]


def test_a_dead_letter_refused_for_its_size_is_sent_without_its_value() -> None:
    producer = FakeProducer(outcomes=[MessageSizeTooLargeError("too large (test)"), "ack"])
    queue = _queue(producer)
    message = record("posts", 0, 1, b"x" * 100)
    queue.send(message, "oversize", "test")
    assert queue.flush().acknowledged == [message]
    assert producer.sent[-1]["value"] == b""
    assert producer.sent[-1]["headers"][HEADER_VALUE_DROPPED].startswith(b"MessageSizeTooLargeError")
