"""The main loop: poll -> parse -> (DLQ) -> micro-batch -> Tagger -> RedisSink -> commit.

At-least-once with idempotent writes. The Kafka consumer is not thread-safe, so it is only ever
touched from the thread that calls ``run`` (rebalance callbacks run inside ``poll`` there too);
batches are tagged and written in a small thread pool. The checkpoint order is fixed: a message
is *done* once Redis acknowledged its batch (or the DLQ acknowledged its dead letter), and the
committed offset of a partition is the first message not done yet (``OffsetTracker``), so a
commit never passes in-flight work. Triton or Redis failures are retried with backoff inside the
batch's thread, forever: the batch is never dropped, nothing after it is committed, and since
the pool's slots stay busy the loop pauses its partitions (backpressure) while it keeps polling,
which keeps the group membership alive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential, wait_random

from worker.inference.backend import InferenceUnavailable
from worker.kafka.dead_letter import DeadLetterLimitExceeded, DeadLetterPolicy, DeadLetterQueue
from worker.kafka.offsets import OffsetTracker
from worker.observability.http import Health
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.batcher import MicroBatcher
from worker.schema import InvalidPost, Post, PostLimits, parse_post
from worker.settings import WorkerSettings
from worker.sinks.redis_sink import SinkRecord, SinkUnavailable
from worker.tagging import PostError, TaggedPost

log = logging.getLogger(__name__)
R = TypeVar("R")

RETRYABLE: tuple[type[Exception], ...] = (InferenceUnavailable, SinkUnavailable)
_LAG_EVERY_S = 5.0
_IN_FLIGHT_POLL_S = 0.02  # poll often while batches run, so finished ones are committed promptly
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
    DEAD_LETTER_LIMIT = 3  # too many dead letters: something systemic, see DeadLetterPolicy


class TaggerLike(Protocol):
    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]: ...


class SinkLike(Protocol):
    def write_batch(self, records: Sequence[SinkRecord]) -> object: ...


@dataclass(frozen=True)
class _Item:
    record: ConsumerRecord
    post: Post

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


@dataclass(frozen=True)
class _BatchResult:
    items: list[_Item]
    outcomes: list[TaggedPost | PostError]


class _Fatal(Exception):
    """Stop the loop: drain, commit what is done, exit non-zero."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamRunner:
    def __init__(
        self,
        settings: WorkerSettings,
        consumer: KafkaConsumer,
        dead_letters: DeadLetterQueue,
        tagger: TaggerLike,
        sink: SinkLike,
        metrics: WorkerMetrics,
        health: Health | None = None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._dlq = dead_letters
        self._tagger = tagger
        self._sink = sink
        self._metrics = metrics
        self._health = health
        self._limits = PostLimits(settings.limits.max_text_chars, settings.limits.max_image_bytes)
        self._policy = DeadLetterPolicy.from_settings(settings.dlq)
        self._offsets = OffsetTracker()
        self._batcher: MicroBatcher[_Item] = MicroBatcher(
            settings.batching.max_batch_size, settings.batching.max_wait_ms / 1000
        )
        self._max_in_flight = settings.batching.max_in_flight_batches
        self._pool = ThreadPoolExecutor(max_workers=self._max_in_flight, thread_name_prefix="batch")
        self._waiting: deque[list[_Item]] = deque()  # full batches waiting for a free slot
        self._running: dict[Future[_BatchResult], list[_Item]] = {}
        self._dead_lettered: list[ConsumerRecord] = []  # sent, waiting for the DLQ's ack
        self._paused = False
        self._stop = threading.Event()
        self._abort = threading.Event()  # ends retry loops: the grace period is over
        self._resume_at: dict[TopicPartition, int] = {}  # first offset not done, of revoked partitions
        self._rebalance_events: queue.SimpleQueue[tuple[str, frozenset[TopicPartition]]] = queue.SimpleQueue()
        self._last_lag_at = 0.0

    # -- control ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop polling and drain (safe from a signal handler); a second call abandons the drain."""
        if self._stop.is_set():
            self._abort.set()
        self._stop.set()

    @property
    def offsets(self) -> OffsetTracker:
        return self._offsets

    def run(self) -> int:
        """Consume until ``request_stop``; return the process exit code."""
        self._consumer.subscribe(topics=list(self._settings.kafka.topics), listener=_Listener(self))
        code = ExitCode.OK
        try:
            while not self._stop.is_set():
                self._step()
        except DeadLetterLimitExceeded as exc:
            log.critical(
                "stopping: dead-letter limit exceeded; the failing message is neither dead-lettered "
                "nor committed. Check the producers and the model, then restart.",
                extra={"fields": {"reason": str(exc)}},
            )
            code = ExitCode.DEAD_LETTER_LIMIT
        except _Fatal as exc:
            log.critical("stopping: %s", exc, exc_info=exc.__cause__ is not None)
            code = exc.code
        except Exception:  # anything else is a bug or a broken dependency: drain, commit, exit 1
            log.critical("stopping: unexpected error in the loop", exc_info=True)
            code = ExitCode.FATAL
        finally:
            code = self._shutdown(code)
        return int(code)

    # -- one iteration ------------------------------------------------------------------------------

    def _step(self) -> None:
        if self._health is not None:
            self._health.beat()
        polled = self._consumer.poll(timeout_ms=self._poll_timeout_ms())
        rewound = self._apply_rebalance_events()
        if polled:
            owned = self._consumer.assignment()
            for tp, records in polled.items():
                # Records fetched before a revoke are the next owner's; those of a partition just
                # rewound are fetched again from the new position.
                if tp in owned and tp not in rewound:
                    for record in records:
                        self._accept(record)
        self._waiting.extend(self._batcher.take_ready())
        self._dispatch()
        self._harvest(self._finished())
        self._settle_dead_letters()
        self._commit()
        self._apply_backpressure()
        self._observe_lag()

    def _poll_timeout_ms(self) -> int:
        timeout_s = min(self._settings.kafka.poll_timeout_ms / 1000, self._batcher.seconds_until_due())
        if self._running:
            timeout_s = min(timeout_s, _IN_FLIGHT_POLL_S)
        return max(0, int(timeout_s * 1000))

    def _accept(self, record: ConsumerRecord) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self._track(tp, record.offset)
        self._metrics.consumed.labels(topic=record.topic).inc()
        if record.value is None:
            self._dead_letter(record, "tombstone", "the message has no value (a tombstone)")
            return
        try:
            post = parse_post(record.value, self._limits)
        except InvalidPost as invalid:
            self._dead_letter(record, invalid.reason, invalid.detail)
            return
        # Judged here, in consumption order: a success recorded only once its batch is in Redis
        # would come after every failure of the same poll and make them look consecutive.
        self._policy.record(failed=False)
        self._batcher.add(_Item(record, post))

    def _track(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._offsets.track(tp, offset)
        except ValueError:
            # The position went backwards without a rebalance (an offset reset after
            # OffsetOutOfRange, a seek): what was tracked is stale. Start the partition afresh; work
            # still running for it is rewritten when the messages come again (idempotent sink).
            log.warning(
                "offset went backwards: tracking the partition afresh",
                extra={"fields": {"partition": str(tp), "offset": offset}},
            )
            self._offsets.forget([tp])
            self._offsets.track(tp, offset)

    def _dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        self._policy.record(failed=True)  # raises before sending when the limit is crossed
        log.warning(
            "dead-lettering message",
            extra={
                "fields": {
                    "reason": reason,
                    "detail": detail,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                }
            },
        )
        self._metrics.dead_lettered.labels(reason=reason).inc()
        if record.value is None:
            # Nothing to inspect or replay, and a null dead letter would itself be a tombstone (or,
            # without a key, refused by the producer): counted, done, not sent.
            self._offsets.mark_done(TopicPartition(record.topic, record.partition), [record.offset])
            return
        try:
            self._dlq.send(record, reason, detail)
        except KafkaError as exc:
            self._metrics.errors.labels(stage="dead_letter").inc()
            raise _Fatal(ExitCode.FATAL, f"the dead-letter topic refused a message: {exc!r}") from exc
        self._dead_lettered.append(record)

    def _dispatch(self) -> None:
        while self._waiting and len(self._running) < self._max_in_flight:
            batch = self._waiting.popleft()
            self._metrics.batch_size.observe(len(batch))
            self._running[self._pool.submit(self._process, batch)] = batch
        self._metrics.in_flight.set(len(self._running))

    def _finished(self) -> list[Future[_BatchResult]]:
        return [future for future in self._running if future.done()]

    def _harvest(self, futures: Iterable[Future[_BatchResult]]) -> None:
        """Account finished batches: tagged posts are in Redis; unusable ones go to the DLQ."""
        for future in futures:
            batch = self._running.pop(future)
            error = future.exception()
            if error is not None:
                if isinstance(error, RETRYABLE) and self._abort.is_set():
                    log.warning(
                        "batch abandoned at shutdown; it will be replayed", extra=_batch_fields(batch)
                    )
                    continue
                raise _Fatal(ExitCode.FATAL, f"batch failed with a non-retryable error: {error!r}") from error
            result = future.result()
            done: dict[TopicPartition, list[int]] = {}
            for item, outcome in zip(result.items, result.outcomes, strict=True):
                if isinstance(outcome, PostError):
                    self._dead_letter(item.record, outcome.reason, outcome.detail)
                    continue
                done.setdefault(item.tp, []).append(item.record.offset)
            for tp, offsets in done.items():
                self._offsets.mark_done(tp, offsets)
            self._metrics.tagged.inc(sum(len(offsets) for offsets in done.values()))
        self._metrics.in_flight.set(len(self._running))

    def _settle_dead_letters(self, timeout_s: float | None = None) -> None:
        if not self._dead_lettered:
            return
        try:
            self._dlq.flush(timeout_s)
        except KafkaError as exc:
            self._metrics.errors.labels(stage="dead_letter").inc()
            raise _Fatal(ExitCode.FATAL, f"the dead-letter topic did not acknowledge: {exc!r}") from exc
        records, self._dead_lettered = self._dead_lettered, []
        for record in records:
            self._offsets.mark_done(TopicPartition(record.topic, record.partition), [record.offset])

    def _commit(self, timeout_s: float | None = None) -> None:
        offsets = self._offsets.committable()
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
        self._offsets.mark_committed(offsets)
        log.debug("committed", extra={"fields": {str(tp): o for tp, o in offsets.items()}})

    def _apply_backpressure(self) -> None:
        """Pause every assigned partition while batches wait for a slot; resume once they fit.

        Checked on every iteration against the consumer's own paused set, so partitions assigned
        in a rebalance are paused too, and none stays paused by accident after one.
        """
        if self._waiting:
            unpaused = set(self._consumer.assignment()) - set(self._consumer.paused())
            if unpaused:
                self._consumer.pause(*unpaused)
            if not self._paused:
                log.info(
                    "backpressure: pausing partitions", extra={"fields": {"waiting": len(self._waiting)}}
                )
            self._paused = True
            return
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)
        if self._paused:
            log.info("backpressure released: resuming partitions")
        self._paused = False

    def _observe_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_at < _LAG_EVERY_S:
            return
        self._last_lag_at = now
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    end - position
                )

    # -- the batch's thread -------------------------------------------------------------------------

    def _process(self, batch: list[_Item]) -> _BatchResult:
        posts = [item.post for item in batch]
        outcomes = self._retrying("tagging", lambda: self._tagger.tag_with_errors(posts))
        records = [
            SinkRecord(
                tagged=outcome,
                topic=item.record.topic,
                partition=item.record.partition,
                offset=item.record.offset,
                kafka_timestamp_ms=item.record.timestamp if item.record.timestamp >= 0 else None,
                created_at=item.post.created_at,
            )
            for item, outcome in zip(batch, outcomes, strict=True)
            if isinstance(outcome, TaggedPost)
        ]
        if records:
            self._retrying("sink", lambda: self._sink.write_batch(records))
        return _BatchResult(batch, outcomes)

    def _retrying(self, stage: str, call: Callable[[], R]) -> R:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s failed, retrying the batch",
                stage,
                extra={"fields": {"attempt": state.attempt_number, "error": repr(error)}},
            )

        retry = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential(multiplier=self._settings.retry.initial_s, max=self._settings.retry.max_s)
            + wait_random(0, self._settings.retry.initial_s),
            stop=lambda _state: self._abort.is_set(),
            sleep=self._sleep_unless_aborted,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retry(call)

    def _sleep_unless_aborted(self, seconds: float) -> None:
        self._abort.wait(seconds)

    # -- rebalance and shutdown ---------------------------------------------------------------------

    def _apply_rebalance_events(self) -> set[TopicPartition]:
        """Apply what the rebalance listener reported, on this thread, before new records are taken.

        Revoked partitions are dropped, not finished: kafka-python 3 runs the listener on its IO
        thread, where waiting for batches would stall heartbeats and a blocking commit is refused.
        Everything harvested was committed before the poll that rebalanced; buffered posts and
        batches still running for revoked partitions are not committed by this worker. A partition
        that comes back to this worker is rewound to its first message not done (kafka-python keeps
        the fetch position of a partition that stays assigned, which would skip the dropped posts);
        one that goes elsewhere is replayed by its next owner from the last commit. Returns the
        partitions rewound. The Redis sink is idempotent, so replays are harmless.
        """
        rewound: set[TopicPartition] = set()
        while True:
            try:
                kind, partitions = self._rebalance_events.get_nowait()
            except queue.Empty:
                return rewound
            if kind == "revoked":
                self._drop_revoked(partitions)
                continue
            for tp in partitions:
                offset = self._resume_at.get(tp)
                if offset is not None:
                    # Whatever is still tracked for it belongs to the earlier assignment: from the
                    # rewound position on, its records are consumed (and tracked) again.
                    self._offsets.forget([tp])
                    self._consumer.seek(tp, offset)
                    rewound.add(tp)
            self._resume_at.clear()
            log.info(
                "partitions assigned",
                extra={
                    "fields": {
                        "partitions": sorted(str(tp) for tp in partitions),
                        "rewound": {str(tp): self._consumer.position(tp, timeout_ms=0) for tp in rewound},
                    }
                },
            )

    def _drop_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        dropped = len(self._batcher.discard(lambda item: item.tp not in partitions))
        waiting = [[i for i in batch if i.tp not in partitions] for batch in self._waiting]
        dropped += sum(len(b) for b in self._waiting) - sum(len(b) for b in waiting)
        self._waiting = deque(batch for batch in waiting if batch)
        running = sum(1 for batch in self._running.values() if any(i.tp in partitions for i in batch))
        for tp in partitions:
            offset = self._offsets.resume_offset(tp)
            if offset is not None:
                self._resume_at[tp] = offset
        self._offsets.forget(partitions)
        log.info(
            "partitions revoked",
            extra={
                "fields": {
                    "partitions": sorted(str(tp) for tp in partitions),
                    "dropped_buffered_posts": dropped,
                    "running_batches_left_uncommitted": running,
                }
            },
        )

    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Listener callback (kafka-python's IO thread): only hand the event to the loop."""
        self._rebalance_events.put(("revoked", frozenset(revoked)))
        if self._health is not None:
            self._health.set_check("kafka", False, "rebalancing")

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Listener callback (kafka-python's IO thread): keep new partitions paused under backpressure."""
        if self._paused and assigned:
            self._consumer.pause(*assigned)  # subscription state only, no network round trip
        self._rebalance_events.put(("assigned", frozenset(assigned)))
        if self._health is not None:
            self._health.set_check("kafka", bool(assigned), "" if assigned else "no partitions assigned")

    def _shutdown(self, code: ExitCode) -> ExitCode:
        """Finish what was polled within the grace period, commit what is done, close.

        Buffered posts are sent too, so a routine restart replays nothing; whatever is not done
        when the grace period ends is abandoned uncommitted and replayed after the restart. The
        dead-letter flush gets what the grace period left (at least ``_MIN_FLUSH_S``) and every
        step after the grace period is bounded, so the whole shutdown takes at most
        ``shutdown_grace_s + SHUTDOWN_OVERRUN_S``.
        """
        deadline = time.monotonic() + self._settings.shutdown_grace_s
        leftover = self._batcher.flush()
        if leftover:
            self._waiting.append(leftover)
        log.info(
            "draining",
            extra={"fields": {"running_batches": len(self._running), "waiting_batches": len(self._waiting)}},
        )
        try:
            while (self._running or self._waiting) and time.monotonic() < deadline:
                self._dispatch()
                wait(
                    list(self._running),
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=FIRST_COMPLETED,
                )
                self._harvest(self._finished())
            self._abort.set()
            if self._running:
                wait(list(self._running), timeout=_ABORT_WAIT_S)
                self._harvest(self._finished())
            self._settle_dead_letters(timeout_s=max(_MIN_FLUSH_S, deadline - time.monotonic()))
            self._commit(timeout_s=_FINAL_COMMIT_S)
        except (_Fatal, DeadLetterLimitExceeded, KafkaError) as exc:
            log.error("error while draining: %r", exc)
            code = code if code != ExitCode.OK else ExitCode.FATAL
            try:  # still commit what is done: less to replay after the restart
                self._commit(timeout_s=_FINAL_COMMIT_S)
            except KafkaError as commit_error:
                log.error("final commit failed: %r", commit_error)
        finally:
            self._abort.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._consumer.close(autocommit=False, timeout_ms=int(_CONSUMER_CLOSE_S * 1000))
            self._dlq.close(timeout_s=_PRODUCER_CLOSE_S)
        log.info("stopped", extra={"fields": {"exit_code": int(code)}})
        return code


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards kafka-python's callbacks, which run on its IO thread, to the loop."""

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._runner.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._runner.on_assigned(set(assigned))


def _batch_fields(batch: Sequence[_Item]) -> dict[str, Any]:
    return {
        "fields": {"posts": len(batch), "first": f"{batch[0].tp}@{batch[0].record.offset}" if batch else ""}
    }
