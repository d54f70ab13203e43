"""What may be committed, and committing it: consumed offsets, dead letters awaiting their ack, commits.

The checkpoint order is fixed (Quix Streams' checkpoint flushes its sinks, then commits): a message is
*done* once the sink acknowledged its batch, or once the broker acknowledged its dead letter; the
committed offset of a partition is the first message not done yet (``OffsetTracker``), so a commit
never passes in-flight work or an unacknowledged dead letter. ``checkpoint()`` settles the dead
letters, then commits. Everything here runs on the loop's thread, the only one touching the consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from worker.kafka.offsets import OffsetTracker
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.items import partition_of
from worker.pipeline.ports import Consumer, DeadLetters
from worker.settings import KafkaSettings

log = logging.getLogger(__name__)

_SETTLE_BACKOFF_MIN_S = 0.5
_SETTLE_BACKOFF_MAX_S = 10.0


class Checkpointer:
    def __init__(
        self,
        consumer: Consumer,
        dead_letters: DeadLetters,
        metrics: WorkerMetrics,
        settings: KafkaSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` is a test knob; the commit and dead-letter waits are bounded by ``settings``."""
        self._consumer = consumer
        self._dlq = dead_letters
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self.offsets = OffsetTracker()
        self._unacknowledged: list[ConsumerRecord] = []  # dead letters sent, ack not yet seen
        self._settle_after = 0.0  # while the DLQ's broker is away, wait before asking again
        self._settle_backoff_s = _SETTLE_BACKOFF_MIN_S

    def track(self, record: ConsumerRecord) -> None:
        """A consumed message: nothing after it is committed until it is done."""
        tp = partition_of(record)
        try:
            self.offsets.track(tp, record.offset)
        except ValueError:
            # The position went backwards without a rebalance (an offset reset after
            # OffsetOutOfRange, a seek): what was tracked is stale. Start the partition afresh; work
            # still running for it is rewritten when the messages come again (idempotent sink).
            log.warning(
                "offset went backwards: tracking the partition afresh",
                extra={"fields": {"partition": str(tp), "offset": record.offset}},
            )
            self.offsets.forget([tp])
            self.offsets.track(tp, record.offset)

    def done(self, tp: TopicPartition, offsets: list[int]) -> None:
        self.offsets.mark_done(tp, offsets)

    def dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        """Send ``record`` to the dead-letter topic; it is done once the broker acknowledged it."""
        self._dlq.send(record, reason, detail)
        self._unacknowledged.append(record)

    def settle_dead_letters(self, timeout_s: float | None = None, *, force: bool = False) -> None:
        """Mark the messages of acknowledged dead letters done. Unacknowledged ones stay pending (and
        their messages uncommitted); while the DLQ's broker fails, asking again is backed off
        (``force`` asks anyway: the shutdown's last chance)."""
        if not self._unacknowledged or (not force and self._clock() < self._settle_after):
            return
        wait_s = self._settings.dlq_flush_wait_ms / 1000 if timeout_s is None else timeout_s
        result = self._dlq.flush(wait_s)
        acknowledged = {(m.topic, m.partition, m.offset) for m in result.acknowledged}
        waiting: list[ConsumerRecord] = []
        for record in self._unacknowledged:
            if (record.topic, record.partition, record.offset) in acknowledged:
                self.offsets.mark_done(partition_of(record), [record.offset])
            else:
                waiting.append(record)
        self._unacknowledged = waiting
        if not result.unacknowledged:
            self._settle_backoff_s = _SETTLE_BACKOFF_MIN_S
            return
        self._metrics.errors.labels(stage="dead_letter").inc()
        self._settle_after = self._clock() + self._settle_backoff_s
        self._settle_backoff_s = min(_SETTLE_BACKOFF_MAX_S, self._settle_backoff_s * 2)
        message, why = result.unacknowledged[0]
        log.warning(
            "dead letters not acknowledged: their messages stay uncommitted, asking again later",
            extra={
                "fields": {
                    "unacknowledged": len(result.unacknowledged),
                    "first": f"{message.topic}-{message.partition}@{message.offset}",
                    "why": why,
                    "retry_in_s": round(self._settle_after - self._clock(), 2),
                }
            },
        )

    def commit(self, timeout_s: float | None = None) -> None:
        """Commit what is done; a failed commit is logged and counted, and retried on the next call.

        The wait is always bounded (``commit_timeout_ms``): kafka-python would otherwise wait up to its
        request timeout, past the liveness probe and ``max.poll.interval.ms``.
        """
        offsets = self.offsets.committable()
        if not offsets:
            return
        timeout_ms = self._settings.commit_timeout_ms if timeout_s is None else int(timeout_s * 1000)
        try:
            self._consumer.commit(
                offsets={tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}, timeout_ms=timeout_ms
            )
        except KafkaError as exc:
            # Typically a rebalance in progress: the work stays done in Redis; whoever owns the
            # partition next replays from its last commit and the idempotent sink absorbs it.
            self._metrics.errors.labels(stage="commit").inc()
            log.warning("commit failed: %r", exc)
            return
        self.offsets.mark_committed(offsets)
        log.debug("committed", extra={"fields": {str(tp): o for tp, o in offsets.items()}})

    def checkpoint(self) -> None:
        """Settle the dead letters, then commit everything done."""
        self.settle_dead_letters()
        self.commit()

    def revoke(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget revoked partitions; returns, per partition, the first offset not done (to rewind to
        if it comes back). What was not committed is the next owner's to replay."""
        resume = {tp: offset for tp in partitions if (offset := self.offsets.resume_offset(tp)) is not None}
        self.offsets.forget(partitions)
        return resume

    def forget(self, partitions: frozenset[TopicPartition]) -> None:
        self.offsets.forget(partitions)

    def close(self, timeout_s: float) -> None:
        self._dlq.close(timeout_s=timeout_s)
