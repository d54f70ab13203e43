"""The dead-letter topic, and the limit that stops the worker instead of dead-lettering everything.

A message that can never succeed (not JSON, wrong schema, oversize, an undecodable image) goes
to the DLQ unchanged (same key, value and headers) with the error and its origin added as
headers, so it can be inspected and replayed. A dead letter the producer or broker refuses for its
size (or a message with neither key nor value) is sent without its value instead, with a header
saying why: a dead letter that can never be sent must not stop the worker on the same message
forever. When many messages fail in a row, or a large share
of a recent window, the cause is most likely systemic (a producer deployed a new format, a
wrong topic, a broken model): the policy raises ``DeadLetterLimitExceeded`` and the worker
stops with a non-zero exit before that message is dead-lettered or committed.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from bga_mner.errors import RejectedError
from worker.errors import EXIT_DEAD_LETTER_LIMIT, WorkerError
from worker.settings import DeadLetterSettings

HEADER_REASON = "bga.error.reason"
HEADER_DETAIL = "bga.error.detail"
HEADER_TOPIC = "bga.source.topic"
HEADER_PARTITION = "bga.source.partition"
HEADER_OFFSET = "bga.source.offset"
HEADER_TIMESTAMP = "bga.source.timestamp_ms"
HEADER_VALUE_DROPPED = "bga.error.value_dropped"
_OUR_HEADERS = frozenset(
    {
        HEADER_REASON,
        HEADER_DETAIL,
        HEADER_TOPIC,
        HEADER_PARTITION,
        HEADER_OFFSET,
        HEADER_TIMESTAMP,
        HEADER_VALUE_DROPPED,
    }
)
# Room for the record's key, headers (ours and the producer's) and framing on top of the largest
# value the input contract allows: the DLQ producer's max_request_size is the two together.
DEAD_LETTER_HEADROOM_BYTES = 64 * 1024
# Refusals that concern this one record, not the broker: resending it without its value fixes them.
_RECORD_REFUSED: tuple[type[Exception], ...] = (MessageSizeTooLargeError, RecordListTooLargeError, ValueError)


class SourceMessage(Protocol):
    """The parts of a kafka-python ``ConsumerRecord`` the DLQ keeps."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[str, bytes]]: ...


class DeadLetterLimitExceeded(WorkerError, RejectedError):
    """Too many dead letters: something systemic is wrong, so the worker stops (exit code 3)."""

    exit_code = EXIT_DEAD_LETTER_LIMIT


class DeadLetterPolicy:
    """Sliding window of recent outcomes; ``record`` raises when a limit is crossed."""

    def __init__(self, settings: DeadLetterSettings) -> None:
        self.max_ratio = settings.max_ratio
        self.window = settings.window
        self.max_consecutive = settings.max_consecutive
        self._recent: deque[bool] = deque(maxlen=self.window)
        self._failed_in_window = 0
        self._consecutive = 0

    def record(self, failed: bool) -> None:
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._failed_in_window -= 1
        self._recent.append(failed)
        self._failed_in_window += failed
        self._consecutive = self._consecutive + 1 if failed else 0
        if self._consecutive >= self.max_consecutive:
            raise DeadLetterLimitExceeded(
                f"{self._consecutive} consecutive messages failed (limit {self.max_consecutive})"
            )
        # The ratio is judged on a full window only: two bad messages out of the first three
        # are noise, not a systemic failure.
        ratio = self._failed_in_window / len(self._recent)
        if len(self._recent) >= self.window and ratio > self.max_ratio:
            raise DeadLetterLimitExceeded(
                f"{self._failed_in_window} of the last {len(self._recent)} messages failed "
                f"({ratio:.0%} > {self.max_ratio:.0%})"
            )


def dead_letter_headers(message: SourceMessage, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The original headers (minus earlier error headers of ours) plus the error and the origin."""
    kept = [(k, v) for k, v in (message.headers or []) if k not in _OUR_HEADERS]
    return [
        *kept,
        (HEADER_REASON, reason.encode()),
        (HEADER_DETAIL, detail.encode("utf-8", "replace")[:1000]),
        (HEADER_TOPIC, message.topic.encode()),
        (HEADER_PARTITION, str(message.partition).encode()),
        (HEADER_OFFSET, str(message.offset).encode()),
        (HEADER_TIMESTAMP, str(message.timestamp).encode()),
    ]


@dataclass
class _Pending:
    message: SourceMessage
    reason: str
    detail: str
    value_dropped: bool = False
    refusal: str = ""  # why the value was dropped (the producer's or broker's error type)
    error: str = ""  # why the last attempt failed, for the log
    future: Any = None  # kafka-python's FutureRecordMetadata; None: not handed to the producer (yet)


@dataclass(frozen=True)
class FlushResult:
    """What a flush settled: dead letters the broker acknowledged, and those it did not (yet).

    The unacknowledged ones stay queued and are sent again by the next ``flush``: their messages
    must not be committed until they are acknowledged.
    """

    acknowledged: list[SourceMessage] = field(default_factory=list)
    unacknowledged: list[tuple[SourceMessage, str]] = field(default_factory=list)


class DeadLetterQueue:
    """Sends dead letters asynchronously; ``flush`` reports which the broker acknowledged.

    Nothing here raises for an unavailable broker: a dead letter the producer cannot take now
    (metadata or buffer wait past ``max_block_ms``) or that the broker did not acknowledge stays
    queued and is sent again on the next flush, so its message stays uncommitted meanwhile.
    """

    def __init__(self, producer: KafkaProducer, topic: str, send_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = send_timeout_s
        self._pending: list[_Pending] = []

    def send(self, message: SourceMessage, reason: str, detail: str) -> None:
        """Queue a dead letter and hand it to the producer; one the producer refuses at once (too
        large, no key and no value) is sent without its value instead."""
        item = _Pending(message, reason, detail)
        self._dispatch(item)
        self._pending.append(item)

    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout_s: float | None = None) -> FlushResult:
        """Wait up to ``timeout_s`` (default: the send timeout) for the queued dead letters' acks.

        A dead letter the broker refused for its size (the DLQ topic's ``max.message.bytes``) is sent
        again without its value and waited for once more; one that failed otherwise, or was not
        acknowledged in time, stays queued (and is re-sent next time if it failed).
        """
        timeout = self._timeout_s if timeout_s is None else timeout_s
        result = FlushResult()
        for round_ in range(2):  # the second round only waits for values dropped in the first
            if not self._pending:
                break
            for item in self._pending:
                if item.future is None:
                    self._dispatch(item)
            # Not everything may complete in time (KafkaTimeoutError): sorted out below, item by item.
            with contextlib.suppress(KafkaError):
                self._producer.flush(timeout=timeout)
            still: list[_Pending] = []
            retry_without_value = False
            for item in self._pending:
                future = item.future
                if future is None or not future.is_done:
                    still.append(item)
                elif future.succeeded():
                    result.acknowledged.append(item.message)
                elif isinstance(future.exception, _RECORD_REFUSED) and not item.value_dropped:
                    self._drop_value(item, future.exception)
                    still.append(item)
                    retry_without_value = True
                else:
                    item.error = f"{type(future.exception).__name__}: {future.exception}"
                    item.future = None  # failed: send it again on the next flush
                    still.append(item)
            self._pending = still
            if not retry_without_value or round_ == 1:
                break
        result.unacknowledged.extend((item.message, _why(item)) for item in self._pending)
        return result

    def close(self, timeout_s: float | None = None) -> None:
        """Close the producer within ``timeout_s``; dead letters still unacknowledged are abandoned
        (their messages were not committed, so they are dead-lettered again after the restart)."""
        with contextlib.suppress(KafkaError):
            self._producer.close(timeout=self._timeout_s if timeout_s is None else timeout_s)

    def _dispatch(self, item: _Pending) -> None:
        try:
            item.future = self._send(item)
        except _RECORD_REFUSED as refused:
            if item.value_dropped:
                item.future = None
                return
            self._drop_value(item, refused)
        except KafkaError as error:  # e.g. KafkaTimeoutError after max_block_ms: the broker is away
            item.error = f"not handed to the producer: {type(error).__name__}: {error}"
            item.future = None

    def _send(self, item: _Pending) -> Any:
        headers = dead_letter_headers(item.message, item.reason, item.detail)
        if item.value_dropped:
            size = len(item.message.value) if item.message.value is not None else 0
            why = f"{item.refusal}: value of {size} bytes not kept"
            headers.append((HEADER_VALUE_DROPPED, why.encode()))
            # An empty value rather than None: a null value is a tombstone, which compaction acts on.
            return self._producer.send(self._topic, key=item.message.key, value=b"", headers=headers)
        return self._producer.send(
            self._topic, key=item.message.key, value=item.message.value, headers=headers
        )

    def _drop_value(self, item: _Pending, refused: BaseException) -> None:
        item.value_dropped = True
        item.refusal = type(refused).__name__
        try:
            item.future = self._send(item)
        except (KafkaError, *_RECORD_REFUSED):
            item.future = None


def _why(item: _Pending) -> str:
    if item.future is None:
        return item.error or "not handed to the producer"
    return "no acknowledgement yet"
