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

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

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


@dataclass(frozen=True)
class _Pending:
    future: Any
    message: SourceMessage
    reason: str
    detail: str
    value_dropped: bool


class DeadLetterQueue:
    """Sends dead letters asynchronously; ``flush`` waits until the broker acknowledged them all."""

    def __init__(self, producer: KafkaProducer, topic: str, send_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = send_timeout_s
        self._pending: list[_Pending] = []

    def send(self, message: SourceMessage, reason: str, detail: str) -> None:
        """Queue a dead letter; one the producer refuses at once (too large, no key and no value) is
        queued without its value instead. Other errors (the broker unreachable) propagate."""
        try:
            future = self._producer.send(
                self._topic,
                key=message.key,
                value=message.value,
                headers=dead_letter_headers(message, reason, detail),
            )
        except _RECORD_REFUSED as refused:
            self._pending.append(self._send_without_value(message, reason, detail, refused))
            return
        self._pending.append(_Pending(future, message, reason, detail, value_dropped=False))

    def _send_without_value(
        self, message: SourceMessage, reason: str, detail: str, refused: BaseException
    ) -> _Pending:
        size = len(message.value) if message.value is not None else 0
        why = f"{type(refused).__name__}: value of {size} bytes not kept"
        # An empty value rather than None: a null value is a tombstone, which compaction would act on.
        headers = [*dead_letter_headers(message, reason, detail), (HEADER_VALUE_DROPPED, why.encode())]
        future = self._producer.send(self._topic, key=message.key, value=b"", headers=headers)
        return _Pending(future, message, reason, detail, value_dropped=True)

    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every sent dead letter is acknowledged; raise if any was not.

        A dead letter the broker refused for its size (the DLQ topic's ``max.message.bytes``) is
        sent again without its value. ``timeout_s`` (default: the send timeout) bounds the wait.
        """
        timeout = self._timeout_s if timeout_s is None else timeout_s
        for _ in range(2):  # the second round only waits for values dropped in the first
            if not self._pending:
                return
            self._producer.flush(timeout=timeout)
            pending, self._pending = self._pending, []
            for index, item in enumerate(pending):
                try:
                    item.future.get(timeout=timeout)  # raises the send error, if any
                except Exception as error:
                    if isinstance(error, _RECORD_REFUSED) and not item.value_dropped:
                        self._pending.append(
                            self._send_without_value(item.message, item.reason, item.detail, error)
                        )
                        continue
                    self._pending = pending[index + 1 :] + self._pending
                    raise

    def close(self, timeout_s: float | None = None) -> None:
        self._producer.close(timeout=self._timeout_s if timeout_s is None else timeout_s)
