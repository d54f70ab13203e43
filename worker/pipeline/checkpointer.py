"""What may be committed, and committing it: consumed offsets, dead letters awaiting their ack, commits.

The checkpoint order is fixed (Quix Streams' checkpoint flushes its sinks, then commits): a message is
*done* once the sink acknowledged its batch, or once the broker acknowledged its dead letter; the
committed offset of a partition is the first message not done yet (``OffsetTracker``), so a commit
never passes in-flight work or an unacknowledged dead letter. ``checkpoint()`` settles the dead
letters, then commits. Everything here runs on the loop's thread, the only one touching the consumer.
"""

from __future__ import annotations

import logging

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from bga_mner.errors import RejectedError
from worker.errors import WorkerError
from worker.kafka.offsets import OffsetTracker
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.items import partition_of
from worker.pipeline.ports import Consumer, DeadLetters

log = logging.getLogger(__name__)


class DeadLetterRefused(WorkerError, RejectedError):
    """The dead-letter topic refused or did not acknowledge a dead letter; its message stays uncommitted."""


class Checkpointer:
    def __init__(self, consumer: Consumer, dead_letters: DeadLetters, metrics: WorkerMetrics) -> None:
        self._consumer = consumer
        self._dlq = dead_letters
        self._metrics = metrics
        self.offsets = OffsetTracker()
        self._unacknowledged: list[ConsumerRecord] = []  # dead letters sent, ack not yet seen

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
        try:
            self._dlq.send(record, reason, detail)
        except KafkaError as exc:
            self._metrics.errors.labels(stage="dead_letter").inc()
            raise DeadLetterRefused(f"the dead-letter topic refused a message: {exc!r}") from exc
        self._unacknowledged.append(record)

    def settle_dead_letters(self, timeout_s: float | None = None) -> None:
        """Wait for the dead letters' acks and mark their messages done; raise if any was not acked."""
        if not self._unacknowledged:
            return
        try:
            self._dlq.flush(timeout_s)
        except KafkaError as exc:
            self._metrics.errors.labels(stage="dead_letter").inc()
            raise DeadLetterRefused(f"the dead-letter topic did not acknowledge: {exc!r}") from exc
        records, self._unacknowledged = self._unacknowledged, []
        for record in records:
            self.offsets.mark_done(partition_of(record), [record.offset])

    def commit(self, timeout_s: float | None = None) -> None:
        """Commit what is done; a failed commit is logged and counted, and retried on the next call."""
        offsets = self.offsets.committable()
        if not offsets:
            return
        timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
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

    def checkpoint(self, timeout_s: float | None = None) -> None:
        """Settle the dead letters, then commit everything done."""
        self.settle_dead_letters(timeout_s)
        self.commit(timeout_s)

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
