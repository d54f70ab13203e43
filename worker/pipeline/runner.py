"""The stream loop: poll -> intake (or DLQ) -> micro-batch -> tag and write -> checkpoint.

At-least-once with idempotent writes. Each step is a part with one job: ``Intake`` parses records,
``DeadLetterRouter`` sends what can never succeed to the DLQ under the dead-letter limit,
``MicroBatcher`` groups posts, ``BatchExecutor`` runs a bounded number of batches (``TagAndWrite``,
retried by ``Retrier``) in threads, ``Checkpointer`` owns offsets, dead-letter acks and commits,
``Backpressure`` pauses consumption while batches wait, ``LagGauge`` reports fetch lag, and
rebalances are applied from ``RebalanceListener``'s events. This module only orchestrates them.

The Kafka consumer is not thread-safe, so only the thread that calls ``run`` touches it: batches
run in the executor's threads and never see it, and the rebalance listener (kafka-python's IO
thread) only queues events. Errors are handled by kind (``bga_mner.errors``): an ``InvalidInput``
is dead-lettered, a ``TransientError`` is retried inside its batch forever (nothing after it is
committed; backpressure keeps polling, so the group membership stays alive), and anything else
stops the worker after a bounded drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from enum import IntEnum

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from bga_mner.errors import InvalidInput, TransientError
from bga_mner.tagging import PostError
from worker.kafka.dead_letter import DeadLetterLimitExceeded
from worker.observability.http import Health
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.backpressure import Backpressure
from worker.pipeline.batcher import MicroBatcher
from worker.pipeline.checkpointer import Checkpointer
from worker.pipeline.dead_letters import DeadLetterRouter
from worker.pipeline.executor import BatchExecutor, FinishedBatch
from worker.pipeline.intake import Intake
from worker.pipeline.items import Item, partition_of
from worker.pipeline.lag import LagGauge
from worker.pipeline.ports import Consumer, DeadLetters, SinkLike, TaggerLike
from worker.pipeline.processing import TagAndWrite
from worker.pipeline.rebalance import RebalanceEvent, RebalanceListener
from worker.pipeline.retry import Retrier
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

_IN_FLIGHT_POLL_S = 0.02  # poll often while batches run, so finished ones are committed promptly
_POLL_FAILURE_PAUSE_S = 0.2  # between polls that fail (the broker is unreachable)
_POLL_FAILURE_LOG_EVERY_S = 5.0
# Shutdown after the grace period, each step bounded: batches told to stop (a Triton call in progress
# cannot be interrupted), the last dead-letter flush when the grace period left it less, the final
# commit, closing the consumer (LeaveGroup) and the DLQ producer.
_ABORT_WAIT_S = 3.0
_MIN_FLUSH_S = 1.0
_FINAL_COMMIT_S = 2.0
_CONSUMER_CLOSE_S = 2.0
_PRODUCER_CLOSE_S = 1.0
SHUTDOWN_OVERRUN_S = _ABORT_WAIT_S + _MIN_FLUSH_S + _FINAL_COMMIT_S + _CONSUMER_CLOSE_S + _PRODUCER_CLOSE_S
"""Most seconds a shutdown takes beyond ``shutdown_grace_s``: Kubernetes' terminationGracePeriodSeconds
must cover preStop + grace + this."""


class ExitCode(IntEnum):
    OK = 0
    FATAL = 1  # a bug or an inconsistent deployment: a batch failed with a non-retryable error
    DEAD_LETTER_LIMIT = DeadLetterLimitExceeded.exit_code  # too many dead letters: see DeadLetterPolicy


class _Stop(Exception):
    """Stop the loop: drain, commit what is done, exit with ``code``."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamRunner:
    def __init__(
        self,
        settings: WorkerSettings,
        consumer: Consumer,
        dead_letters: DeadLetters,
        tagger: TaggerLike,
        sink: SinkLike,
        metrics: WorkerMetrics,
        health: Health | None = None,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``executor``, ``clock`` and ``sleep`` are test knobs (the batch threads, the batcher's and the
        shutdown's clock, the retry waits); everything an operator sets is in ``settings``."""
        self._settings = settings
        self._consumer = consumer
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._intake = Intake(settings.limits)
        self._checkpointer = Checkpointer(consumer, dead_letters, metrics, settings.kafka, clock=clock)
        self._dead_letters = DeadLetterRouter(settings.dlq, self._checkpointer, metrics)
        self._batcher: MicroBatcher[Item] = MicroBatcher(
            settings.batching.max_batch_size, settings.batching.max_wait_ms / 1000, clock=clock
        )
        self._retrier = Retrier(settings.retry, sleep=sleep)
        self._executor = BatchExecutor(
            TagAndWrite(tagger, sink, self._retrier),
            settings.batching.max_in_flight_batches,
            executor=executor,
        )
        self._backpressure = Backpressure(consumer)
        self._lag = LagGauge(consumer, metrics, clock=clock)
        self._listener = RebalanceListener()
        self._resume_at: dict[TopicPartition, int] = {}  # first offset not done, of revoked partitions
        self._stop = threading.Event()
        self._poll_failure_logged_at = float("-inf")

    # -- control ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop polling and drain (safe from a signal handler); a second call abandons the drain."""
        if self._stop.is_set():
            self._retrier.abort()
        self._stop.set()

    @property
    def checkpointer(self) -> Checkpointer:
        return self._checkpointer

    @property
    def listener(self) -> RebalanceListener:
        return self._listener

    def start(self) -> None:
        """Subscribe to the topics (``run`` does it; tests that call ``step`` themselves call it first)."""
        self._consumer.subscribe(topics=list(self._settings.kafka.topics), listener=self._listener)
        if self._health is not None:
            self._health.set_check("loop", True)

    def run(self) -> int:
        """Consume until ``request_stop``; return the process exit code."""
        self.start()
        code = ExitCode.OK
        try:
            while not self._stop.is_set():
                self.step()
        except DeadLetterLimitExceeded as exc:
            log.critical(
                "stopping: dead-letter limit exceeded; the failing message is neither dead-lettered "
                "nor committed. Check the producers and the model, then restart.",
                extra={"fields": {"reason": str(exc)}},
            )
            code = ExitCode.DEAD_LETTER_LIMIT
        except _Stop as exc:
            log.critical("stopping: %s", exc, exc_info=exc.__cause__ is not None)
            code = exc.code
        except Exception:  # a RejectedError, a bug or a broken dependency: drain, commit, exit 1
            log.critical("stopping: unexpected error in the loop", exc_info=True)
            code = ExitCode.FATAL
        finally:
            code = self._shutdown(code)
        return int(code)

    # -- one iteration ------------------------------------------------------------------------------

    def step(self) -> None:
        """One iteration of the loop (``run`` calls it until stopped; tests call it directly)."""
        if self._health is not None:
            self._health.beat()
        polled = self._poll()
        rewound = self._apply_rebalances(self._listener.drain())
        if polled:
            owned = self._consumer.assignment()
            for tp, records in polled.items():
                # Records fetched before a revoke are the next owner's; those of a partition just
                # rewound are fetched again from the new position.
                if tp in owned and tp not in rewound:
                    for record in records:
                        self._accept(record)
        for batch in self._batcher.take_ready():
            self._submit(batch)
        for finished in self._executor.poll():
            self._harvest(finished)
        self._metrics.in_flight.set(self._executor.in_flight)
        self._checkpointer.checkpoint()
        self._backpressure.update(self._executor.backlogged)
        self._lag.observe()

    def _poll(self) -> Mapping[TopicPartition, list[ConsumerRecord]]:
        """Records of the next poll; none while the broker (or its group coordinator) is unreachable.

        kafka-python raises from ``poll`` when it cannot reach the coordinator or refresh metadata. That
        is an outage to wait out, not a reason to stop: running batches still finish and are settled,
        nothing is committed, and the worker resumes where it was once the broker answers again.
        """
        try:
            return self._consumer.poll(timeout_ms=self._poll_timeout_ms())
        except KafkaError as error:
            self._metrics.errors.labels(stage="poll").inc()
            now = self._clock()
            if now - self._poll_failure_logged_at >= _POLL_FAILURE_LOG_EVERY_S:
                self._poll_failure_logged_at = now
                log.warning(
                    "poll failed (broker unreachable?): retrying", extra={"fields": {"error": repr(error)}}
                )
            self._stop.wait(_POLL_FAILURE_PAUSE_S)
            return {}

    def _poll_timeout_ms(self) -> int:
        timeout_s = min(self._settings.kafka.poll_timeout_ms / 1000, self._batcher.seconds_until_due())
        if not self._executor.idle:
            timeout_s = min(timeout_s, _IN_FLIGHT_POLL_S)
        return max(0, int(timeout_s * 1000))

    def _accept(self, record: ConsumerRecord) -> None:
        self._checkpointer.track(record)
        self._metrics.consumed.labels(topic=record.topic).inc()
        try:
            item = self._intake.parse(record)
        except InvalidInput as invalid:
            self._dead_letters.reject(record, invalid.reason, invalid.detail)
            return
        if item is None:  # a tombstone: nothing to tag, nothing wrong
            self._metrics.tombstones.labels(topic=record.topic).inc()
            self._checkpointer.done(partition_of(record), [record.offset])
            return
        self._dead_letters.accepted()
        self._batcher.add(item)

    def _submit(self, batch: list[Item]) -> None:
        self._metrics.batch_size.observe(len(batch))
        self._executor.submit(batch)

    def _harvest(self, finished: FinishedBatch) -> None:
        """Account a finished batch: tagged posts are in the sink; untaggable ones go to the DLQ."""
        if finished.outcomes is None:
            error = finished.error
            if isinstance(error, TransientError) and self._retrier.aborted:
                first = finished.items[0].where() if finished.items else ""
                log.warning(
                    "batch abandoned at shutdown; it will be replayed",
                    extra={"fields": {"posts": len(finished.items), "first": first}},
                )
                return
            raise _Stop(ExitCode.FATAL, f"batch failed with a non-retryable error: {error!r}") from error
        done: dict[TopicPartition, list[int]] = {}
        for item, outcome in zip(finished.items, finished.outcomes, strict=True):
            if isinstance(outcome, PostError):
                self._dead_letters.reject(item.record, outcome.reason, outcome.detail)
                continue
            done.setdefault(item.tp, []).append(item.record.offset)
        for tp, offsets in done.items():
            self._checkpointer.done(tp, offsets)
        self._metrics.tagged.inc(sum(len(offsets) for offsets in done.values()))

    # -- rebalances ---------------------------------------------------------------------------------

    def _apply_rebalances(self, events: list[RebalanceEvent]) -> set[TopicPartition]:
        """Apply rebalance events before new records are taken; returns the partitions rewound.

        Revoked partitions are dropped, not finished (the listener cannot wait for batches).
        Everything harvested was committed before the poll that rebalanced; buffered posts and
        batches still running for revoked partitions are not committed by this worker. A partition
        that comes back to this worker is rewound to its first message not done (kafka-python keeps
        the fetch position of a partition that stays assigned, which would skip the dropped posts);
        one that goes elsewhere is replayed by its next owner from the last commit. The sink is
        idempotent, so replays are harmless.
        """
        rewound: set[TopicPartition] = set()
        for event in events:
            if event.kind == "revoked":
                self._revoke(event.partitions)
            else:
                rewound |= self._assign(event.partitions)
        return rewound

    def _revoke(self, partitions: frozenset[TopicPartition]) -> None:
        dropped = len(self._batcher.discard(lambda item: item.tp not in partitions))
        waiting_dropped, running = self._executor.discard(partitions)
        self._resume_at.update(self._checkpointer.revoke(partitions))
        self._lag.forget(partitions)
        log.info(
            "partitions revoked",
            extra={
                "fields": {
                    "partitions": sorted(str(tp) for tp in partitions),
                    "dropped_buffered_posts": dropped + waiting_dropped,
                    "running_batches_left_uncommitted": running,
                }
            },
        )

    def _assign(self, partitions: frozenset[TopicPartition]) -> set[TopicPartition]:
        rewound: set[TopicPartition] = set()
        for tp in partitions:
            offset = self._resume_at.get(tp)
            if offset is not None:
                # Whatever is still tracked for it belongs to the earlier assignment: from the
                # rewound position on, its records are consumed (and tracked) again.
                self._checkpointer.forget(frozenset([tp]))
                self._consumer.seek(tp, offset)
                rewound.add(tp)
        self._resume_at.clear()
        if self._backpressure.paused and partitions:
            self._consumer.pause(*partitions)  # new partitions wait too while batches are backlogged
        log.info(
            "partitions assigned",
            extra={
                "fields": {
                    "partitions": sorted(str(tp) for tp in partitions),
                    "rewound": {str(tp): self._position(tp) for tp in rewound},
                }
            },
        )
        return rewound

    def _position(self, tp: TopicPartition) -> int | None:
        try:
            return self._consumer.position(tp, timeout_ms=0)
        except KafkaError:
            return None

    # -- shutdown -----------------------------------------------------------------------------------

    def _shutdown(self, code: ExitCode) -> ExitCode:
        """Finish what was polled within the grace period, commit what is done, close.

        Buffered posts are sent too, so a routine restart replays nothing; whatever is not done
        when the grace period ends is abandoned uncommitted and replayed after the restart. The
        dead-letter flush gets what the grace period left (at least ``_MIN_FLUSH_S``) and every
        step after the grace period is bounded, so the whole shutdown takes at most
        ``shutdown_grace_s + SHUTDOWN_OVERRUN_S``.
        """
        deadline = self._clock() + self._settings.shutdown_grace_s
        if self._health is not None:
            self._health.set_check("loop", False, "draining")
        self._submit_leftover()
        log.info("draining", extra={"fields": {"in_flight_batches": self._executor.in_flight}})
        try:
            while not self._executor.idle and self._clock() < deadline:
                for finished in self._executor.join(deadline - self._clock()):
                    self._harvest(finished)
            self._retrier.abort()
            if not self._executor.idle:
                for finished in self._executor.join(_ABORT_WAIT_S):
                    self._harvest(finished)
            self._checkpointer.settle_dead_letters(
                timeout_s=max(_MIN_FLUSH_S, deadline - self._clock()), force=True
            )
            self._checkpointer.commit(timeout_s=_FINAL_COMMIT_S)
        except Exception as exc:  # the drain must end in a commit and a close, whatever failed
            log.error("error while draining: %r", exc)
            code = code if code != ExitCode.OK else ExitCode.FATAL
            try:  # still commit what is done: less to replay after the restart
                self._checkpointer.commit(timeout_s=_FINAL_COMMIT_S)
            except KafkaError as commit_error:
                log.error("final commit failed: %r", commit_error)
        finally:
            self._retrier.abort()
            self._executor.close()
            try:  # LeaveGroup, so the partitions move at once rather than after the session timeout
                self._consumer.close(autocommit=False, timeout_ms=int(_CONSUMER_CLOSE_S * 1000))
            except KafkaError as error:
                log.warning("closing the consumer failed: %r", error)
            self._checkpointer.close(_PRODUCER_CLOSE_S)
        log.info("stopped", extra={"fields": {"exit_code": int(code)}})
        return code

    def _submit_leftover(self) -> None:
        leftover = self._batcher.flush()
        size = self._settings.batching.max_batch_size
        for start in range(0, len(leftover), size):
            self._submit(leftover[start : start + size])
