"""Helpers shared by the worker's integration tests (tests/integration/test_worker_*.py).

Small Kafka/Redis utilities against the real local stack: produce, read back the DLQ, committed
and end offsets, and worker settings whose group-join timeouts suit tests (see ENVIRONMENT.md:
kafka-python's rebalance timeout is max_poll_interval_ms).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from bga_mner.results import trending_member
from bga_mner.stack.local import LocalStack
from tests.fixtures.model_repository import build_tiny_model_repository
from worker.kafka.consumer import create_consumer, create_producer
from worker.kafka.dead_letter import DeadLetterQueue
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.ports import SinkLike, TaggerLike
from worker.pipeline.runner import StreamRunner
from worker.settings import WorkerSettings
from worker.sinks.redis_sink import RedisSink, redis_client

FAST_GROUP = {
    "max_poll_interval_ms": 10_000,
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 1_000,
    "request_timeout_ms": 15_000,
}
# Every post of a test session is "created" at one recent moment: trending buckets older than the
# trending TTL are trimmed from the bucket index.
CREATED_AT = datetime.now(UTC).replace(microsecond=0)

NAMES = [
    "Angela Merkel",
    "Emmanuel Macron",
    "Taylor Swift",
    "Lionel Messi",
    "Barack Obama",
    "Serena Williams",
]
PLACES = ["Paris", "London", "New York", "Berlin", "Tokyo", "Lagos", "São Paulo"]
ORGS = ["Arsenal", "the United Nations", "Apple", "NASA", "Real Madrid", "Google"]
TEMPLATES = [
    "{name} arrives in {place} for talks with {org} #news",
    "RT @desk : {org} confirms {name} will visit {place} tomorrow",
    "Watching {org} vs {place} tonight with {name} 🎉⚽",
    "{name} 👩‍👩‍👧 in {place}\u200b — huge crowd! https://t.co/x{n}",
    "מחר {name} ב{place} with {org}",
    "lol {place} is so cold today , {name} agrees",
]


def make_posts(count: int, prefix: str = "p") -> list[dict[str, Any]]:
    """Tweet-like posts (emoji, URLs, RTL, zero-width characters) with stable ids."""
    posts = []
    for n in range(count):
        text = TEMPLATES[n % len(TEMPLATES)].format(
            name=NAMES[n % len(NAMES)],
            place=PLACES[(n // 2) % len(PLACES)],
            org=ORGS[(n // 3) % len(ORGS)],
            n=n,
        )
        posts.append(
            {"id": f"{prefix}-{n:05d}", "text": text, "created_at": CREATED_AT.isoformat(), "lang": "en"}
        )
    return posts


# Ends of the topics the tests produced to, from the producer's acknowledgements. Asking the broker
# (ListOffsets "latest") is what Apache Kafka users do, but the Tansu broker answers it with the
# base offset of the last record *batch* + 1, which is short when the producer batched records.
_PRODUCED_ENDS: dict[str, dict[int, int]] = {}


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> int:
    """Produce ``(key, value)`` pairs (a None value is a tombstone); messages up to 16 MiB."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 << 20)
    try:
        futures = [producer.send(topic, key=key, value=value, partition=partition) for key, value in messages]
        producer.flush(timeout=30)
        ends = _PRODUCED_ENDS.setdefault(topic, {})
        for future in futures:
            meta = future.get(timeout=30)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        producer.close(timeout=10)
    return len(futures)


def produce_posts(bootstrap: str, topic: str, posts: Sequence[dict[str, Any]]) -> int:
    """The input contract: key = post id, value = the post as JSON."""
    return produce(
        bootstrap, topic, ((p["id"].encode(), json.dumps(p, ensure_ascii=False).encode()) for p in posts)
    )


def end_offsets(topic: str) -> dict[int, int]:
    """End offset (last offset + 1) of every partition the tests produced to."""
    return dict(_PRODUCED_ENDS.get(topic, {}))


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Every message of ``topic`` (assign + seek, no group), waiting until ``expected`` arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        time.sleep(0.3)  # anything beyond `expected` would be a bug: give it a moment to show up
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def worker_settings(
    *,
    bootstrap: str,
    redis_url: str,
    topic: str,
    group: str,
    dlq_topic: str,
    key_prefix: str,
    model_repository: Path = Path("unused"),
    triton_url: str = "127.0.0.1:1",
    model_name: str = "bga_mner",
    sections: dict[str, dict[str, Any]] | None = None,
) -> WorkerSettings:
    """Settings for one test's worker; ``sections`` override whole sections' values (e.g. batching=...)."""
    values: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": group,
            "dlq_topic": dlq_topic,
            "poll_timeout_ms": 100,
            "dlq_send_timeout_s": 15.0,
            **FAST_GROUP,
        },
        "redis": {"url": redis_url, "key_prefix": key_prefix},
        "triton": {"url": triton_url, "model_name": model_name, "timeout_s": 10.0},
        "model_repository": model_repository,
        "batching": {"max_batch_size": 16, "max_wait_ms": 50, "max_in_flight_batches": 2},
        "retry": {"initial_s": 0.05, "max_s": 0.5},
        "metrics_port": 0,
        "shutdown_grace_s": 8.0,
    }
    for name, overrides in (sections or {}).items():
        values[name] = {**values.get(name, {}), **overrides}
    return WorkerSettings(**values)


def stack_worker_settings(
    stack: LocalStack,
    new_topic: Callable[..., str],
    *,
    key_prefix: str,
    partitions: int = 1,
    model: tuple[Path, str] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> WorkerSettings:
    """Settings for a worker on the local stack: a new input topic (its group named after it), a new
    DLQ topic, a key prefix of its own and, when given, the served ``model`` (repository, name)."""
    topic = new_topic(partitions=partitions)
    served: dict[str, Any] = {}
    if model is not None:
        served = {"model_repository": model[0], "model_name": model[1], "triton_url": stack.triton_grpc}
    return worker_settings(
        bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        topic=topic,
        group=f"{topic}-group",
        dlq_topic=new_topic(partitions=1),
        key_prefix=f"{key_prefix}{uuid.uuid4().hex[:8]}",
        sections=sections,
        **served,
    )


def serve_tiny_model(
    load_triton_model: Callable[..., str], directory: Path, prefix: str = "bga_mner", **options: Any
) -> tuple[Path, str]:
    """A tiny exported model repository under a name of its own, loaded into the shared Triton;
    ``options`` go to ``build_tiny_model_repository`` (e.g. image_size=8)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    root = build_tiny_model_repository(directory, model_name=name, **options)
    assert load_triton_model(root / name) == name
    return root, name


@contextmanager
def captured_logs(logger_name: str, level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """The records ``logger_name`` emits (from any thread) while the block runs."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(logger_name)
    handler, old_level = Collect(level), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def worker_environment(settings: WorkerSettings) -> dict[str, str]:
    """The same settings as BGA_* variables, for a worker subprocess."""
    env: dict[str, str] = {}

    def flatten(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(inner, f"{prefix}__{key.upper()}" if prefix != "BGA" else f"BGA_{key.upper()}")
        elif value is None:
            return
        elif isinstance(value, list):
            env[prefix] = ",".join(str(v) for v in value)
        else:
            env[prefix] = str(value).lower() if isinstance(value, bool) else str(value)

    dumped = settings.model_dump(mode="json")
    secrets = {"redis": {"url": settings.redis.url.get_secret_value() if settings.redis.url else None}}
    dumped["redis"].update({k: v for k, v in secrets["redis"].items() if v is not None})
    flatten(dumped, "BGA")
    return env


class RunnerThread:
    """A ``StreamRunner`` driven from a thread, as the CLI drives it from the main thread."""

    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-runner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.runner.run()
        except BaseException as exc:
            self.error = exc
            raise

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop (idempotent: a stopped runner keeps its exit code)."""
        if self.exit_code is not None:
            return self.exit_code
        self.runner.request_stop()
        return self.join(timeout_s)

    def join(self, timeout_s: float = 30.0) -> int:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the worker did not stop in time"
        assert self.error is None, f"the worker crashed: {self.error!r}"
        assert self.exit_code is not None
        return self.exit_code


def build_runner(
    settings: WorkerSettings,
    tagger: TaggerLike,
    wrap_sink: Callable[[RedisSink], SinkLike] | None = None,
) -> tuple[StreamRunner, RedisSink, WorkerMetrics]:
    """The real loop, consumer, DLQ producer and Redis sink around ``tagger`` (``wrap_sink`` may put
    a fault-injecting wrapper between the loop and the real sink)."""
    metrics = WorkerMetrics()
    sink = RedisSink(redis_client(settings.redis), settings.redis, metrics)
    dead_letters = DeadLetterQueue(
        create_producer(settings.kafka, settings.limits),
        settings.kafka.dlq_topic,
        settings.kafka.dlq_send_timeout_s,
    )
    loop_sink: SinkLike = wrap_sink(sink) if wrap_sink is not None else sink
    runner = StreamRunner(settings, create_consumer(settings.kafka), dead_letters, tagger, loop_sink, metrics)
    return runner, sink, metrics


def expected_trending(tagged: Iterable[tuple[str, Sequence[dict[str, Any]]]]) -> Counter[str]:
    """Trending counts the sink must hold: each post counts each distinct entity once."""
    counts: Counter[str] = Counter()
    for _post_id, entities in tagged:
        counts.update({trending_member(e["type"], e["text"]) for e in entities})
    return counts


def counter_value(counter: Any, **labels: str) -> float:
    """Current value of a prometheus_client Counter (one label set), via its public ``collect()``."""
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == labels:
                return float(sample.value)
    return 0.0


def trending_counts(sink: RedisSink) -> Counter[str]:
    counts: Counter[str] = Counter()
    for bucket in sink.reader.buckets():
        for entity_type, text, posts in sink.reader.top_trending(bucket, count=100_000):
            counts[f"{entity_type}|{text}"] += posts
    return counts


def tag_with_cli(
    posts: Sequence[dict[str, Any]], repository: Path, model_name: str, workdir: Path
) -> dict[str, list[dict[str, Any]]]:
    """What `bga-mner tag` (the embedded mode: ONNX Runtime in-process) says about ``posts``."""
    source = workdir / f"posts-{uuid.uuid4().hex[:8]}.jsonl"
    source.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bga_mner.cli",
            "tag",
            str(source),
            "--model-repository",
            str(repository),
            "--model-name",
            model_name,
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {line["id"]: line["entities"] for line in lines}


# Runs `bga-mner worker` with an import hook that refuses torch and reports every attempt at exit:
# the worker process must never import it, directly or through a dependency.
NO_TORCH_WORKER = """
import importlib.abc, sys
attempts = []
class RefuseTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            attempts.append(name)
            raise ImportError("the worker must not import " + name)
        return None
sys.meta_path.insert(0, RefuseTorch())
from bga_mner.cli import main
try:
    code = main(["worker"])
finally:
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    sys.stderr.write("TORCH_IMPORT_ATTEMPTS=%s TORCH_MODULES=%s\\n" % (",".join(attempts), ",".join(loaded)))
    sys.stderr.flush()
sys.exit(code)
"""


def start_worker_process(settings: WorkerSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """`bga-mner worker` as a separate process configured only through BGA_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGA_")}
    env.update(worker_environment(settings))
    log_file = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", NO_TORCH_WORKER], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )


def stored_records(settings: WorkerSettings, sink: RedisSink, post_ids: Sequence[str]) -> int:
    """How many of ``post_ids`` have a record in Redis (one round trip)."""
    client = redis_client(settings.redis)
    try:
        return int(client.exists(*(sink.keys.post(post_id) for post_id in post_ids)))
    finally:
        client.close()
