"""The demo's Kafka side: topics, producing, the group's commits and the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from bga_mner.demo.layout import DLQ_TOPIC, GROUP, TOPIC, DemoError
from bga_mner.demo.posts import Message


def create_topics(
    bootstrap: str, wanted: Mapping[str, int] | None = None, client_id: str = "bga-mner-demo"
) -> None:
    """Create topics (name -> partitions; default: the demo's) and wait until the broker's metadata
    shows every partition, so a producer or consumer started next never races their creation."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

    wanted = {TOPIC: 3, DLQ_TOPIC: 1} if wanted is None else dict(wanted)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(name=n, num_partitions=p, replication_factor=1) for n, p in wanted.items()]
        )
        deadline = time.monotonic() + 30
        while any(len(probe.partitions_for_topic(n) or ()) != p for n, p in wanted.items()):
            if time.monotonic() > deadline:
                raise DemoError(f"topics {sorted(wanted)} did not appear in the broker's metadata")
            time.sleep(0.1)
    finally:
        probe.close()
        admin.close()


def produce(bootstrap: str, messages: Sequence[Message]) -> dict[int, int]:
    """Send and wait for every acknowledgement; returns the end offset of each partition written to."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(TOPIC, key=m.key, value=m.value) for m in messages]
        producer.flush(timeout=60)
        ends: dict[int, int] = {}
        for future in futures:
            meta = future.get(timeout=60)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        producer.close(timeout=10)


def committed_offsets(bootstrap: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bga-mner-demo")
    try:
        offsets = admin.list_group_offsets(GROUP).get(GROUP, {})
    finally:
        admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == TOPIC and meta.offset >= 0
    }


def wait_for_commits(bootstrap: str, ends: dict[int, int], timeout_s: float = 15.0) -> dict[int, int]:
    """The group's committed offsets once they reach ``ends`` (commits follow Redis' ack by a moment)."""
    deadline = time.monotonic() + timeout_s
    while (committed := committed_offsets(bootstrap)) != ends and time.monotonic() < deadline:
        time.sleep(0.5)
    return committed


def read_dead_letters(bootstrap: str, expected: int, timeout_s: float = 15.0) -> list[tuple[str, str, str]]:
    """(key, reason, detail) of every message on the dead-letter topic."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(DLQ_TOPIC, p) for p in sorted(consumer.partitions_for_topic(DLQ_TOPIC) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        letters: list[tuple[str, str, str]] = []
        deadline = time.monotonic() + timeout_s
        while len(letters) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers or []}
                    key = (record.key or b"").decode(errors="replace")
                    letters.append(
                        (key, headers.get("bga.error.reason", "?"), headers.get("bga.error.detail", ""))
                    )
        return letters
    finally:
        consumer.close()
