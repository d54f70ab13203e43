"""Dead-letter headers and the limit that stops the worker when failures look systemic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from kafka import KafkaProducer

from bga_mner.posts import LimitSettings
from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import read_topic
from worker.kafka.consumer import create_producer, dead_letter_max_request_bytes
from worker.kafka.dead_letter import (
    HEADER_DETAIL,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    HEADER_VALUE_DROPPED,
    DeadLetterLimitExceeded,
    DeadLetterPolicy,
    DeadLetterQueue,
    dead_letter_headers,
)
from worker.settings import DeadLetterSettings, KafkaSettings


@dataclass
class Message:
    topic: str = "posts"
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"p1"
    value: bytes | None = b"{"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_headers_record_reason_detail_and_origin() -> None:
    headers = dict(dead_letter_headers(Message(headers=[("trace", b"abc")]), "invalid_json", "EOF at 1"))
    assert headers[HEADER_REASON] == b"invalid_json"
    assert headers[HEADER_DETAIL] == b"EOF at 1"
    assert headers[HEADER_TOPIC] == b"posts"
    assert headers[HEADER_PARTITION] == b"2"
    assert headers[HEADER_OFFSET] == b"41"
    assert headers["trace"] == b"abc"  # the producer's own headers travel along


def test_a_replayed_dead_letter_gets_fresh_error_headers_only_once() -> None:
    first = dead_letter_headers(Message(), "schema", "old")
    again = dead_letter_headers(Message(headers=first), "oversize", "new")
    reasons = [v for k, v in again if k == HEADER_REASON]
    assert reasons == [b"oversize"]


def test_consecutive_limit_stops() -> None:
    policy = DeadLetterPolicy(DeadLetterSettings(max_ratio=1.0, window=1000, max_consecutive=3))
    policy.record(failed=True)
    policy.record(failed=True)
    policy.record(failed=False)  # resets the run
    policy.record(failed=True)
    policy.record(failed=True)
    with pytest.raises(DeadLetterLimitExceeded, match="3 consecutive"):
        policy.record(failed=True)


def test_ratio_is_judged_on_a_full_window_only() -> None:
    policy = DeadLetterPolicy(DeadLetterSettings(max_ratio=0.5, window=10, max_consecutive=100))
    for failed in [True, False] * 4 + [True]:  # 5 of 9: window not full yet
        policy.record(failed=failed)
    with pytest.raises(DeadLetterLimitExceeded, match="6 of the last 10"):
        policy.record(failed=True)


def test_occasional_bad_messages_never_stop() -> None:
    policy = DeadLetterPolicy(DeadLetterSettings(max_ratio=0.2, window=50, max_consecutive=5))
    for index in range(10_000):
        policy.record(failed=index % 7 == 0)  # about 14 %, never 5 in a row


def test_old_failures_leave_the_window() -> None:
    policy = DeadLetterPolicy(DeadLetterSettings(max_ratio=0.5, window=4, max_consecutive=100))
    for failed in [True, True, False, False, False, False, True, True]:
        policy.record(failed=failed)  # never more than 2 of the last 4


def test_the_dlq_producer_takes_the_largest_message_the_limits_allow() -> None:
    """kafka-python's default max_request_size (1 MiB) is below a post with a 5 MB image."""
    limits = LimitSettings()
    assert dead_letter_max_request_bytes(limits) > 4 * limits.max_image_bytes // 3 + 6 * limits.max_text_chars


@pytest.mark.integration
def test_a_dead_letter_over_one_mib_is_sent(local_stack: LocalStack, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    settings = KafkaSettings(bootstrap_servers=[local_stack.kafka_bootstrap])
    dlq = DeadLetterQueue(create_producer(settings), topic, send_timeout_s=15)
    big = b'{"id": "big", "text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    try:
        dlq.send(Message(value=big), "oversize", "text has 3145728 characters")
        dlq.flush()
    finally:
        dlq.close()
    [record] = read_topic(local_stack.kafka_bootstrap, topic, expected=1)
    headers = dict(record.headers)
    assert headers[HEADER_REASON] == b"oversize"
    # Kept whole unless the broker's message size limit refused it; then kept without the value.
    assert record.value == big or (HEADER_VALUE_DROPPED in headers and record.value == b"")


@pytest.mark.integration
def test_a_dead_letter_the_producer_refuses_is_kept_without_its_value(
    local_stack: LocalStack, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=local_stack.kafka_bootstrap, acks="all", max_request_size=4096)
    dlq = DeadLetterQueue(producer, topic, send_timeout_s=15)
    try:
        dlq.send(Message(offset=7, value=b"y" * 20_000), "oversize", "too long")  # over max_request_size
        dlq.send(
            Message(offset=8, key=None, value=None), "invalid_json", "empty"
        )  # the producer's ValueError
        dlq.send(Message(offset=9, value=b"{"), "invalid_json", "EOF")  # a normal one
        dlq.flush()
        assert dlq.pending() == 0
    finally:
        dlq.close()
    records = read_topic(local_stack.kafka_bootstrap, topic, expected=3)
    by_offset = {int(dict(r.headers)[HEADER_OFFSET]): r for r in records}
    assert sorted(by_offset) == [7, 8, 9]
    dropped = dict(by_offset[7].headers)
    assert by_offset[7].value == b"" and by_offset[7].key == b"p1"
    assert b"MessageSizeTooLargeError" in dropped[HEADER_VALUE_DROPPED]
    assert dropped[HEADER_REASON] == b"oversize"
    assert by_offset[8].value == b"" and b"ValueError" in dict(by_offset[8].headers)[HEADER_VALUE_DROPPED]
    assert by_offset[9].value == b"{" and HEADER_VALUE_DROPPED not in dict(by_offset[9].headers)
