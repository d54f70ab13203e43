"""The worker end to end: posts produced to the local broker, consumed, tagged by Triton, in Redis.

One fresh `bga-mner worker` process per run (its own topic, consumer group and Redis key prefix,
configured only by BGA_* variables, as in production). It is warmed up first (a few posts must reach
Redis, so the group join and the first Triton calls are behind it); then every post is produced as
fast as the producer can and the run ends when the worker's results stream holds all of them. A
post's latency is the time from its produce call to its results-stream entry (the stream's entry id
is Redis's clock in ms, the same machine's clock as the producer's).

CPU seconds are counted for every process involved while the posts flow: the worker, Triton (server
and python-backend stub), the Kafka-protocol broker, Redis and the producer (this process).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bga_mner.demo.kafka_io import create_topics
from bga_mner.demo.worker_run import scrape, worker_environment
from bga_mner.results import ResultKeys
from bga_mner.stack import process
from bga_mner.stack.ports import free_ports
from pipeline_bench.procs import ProcessTree, cpu_seconds, peak_rss_bytes

if TYPE_CHECKING:
    from bga_mner.stack import LocalStack

WARMUP_POSTS = 64


class WorkerRunError(RuntimeError):
    pass


@dataclass
class WorkerMeasurement:
    wall_s: float
    cpu_s: dict[str, float]  # per process group
    peak_rss_bytes: int  # the worker process
    latencies_s: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)  # results-stream times, sorted

    def steady_posts_per_s(self) -> float | None:
        """Completions per second between the 10th and the 90th percentile post: the rate once the
        pipeline is full, without the fill at the start (first poll, first batch) and the tail."""
        count = len(self.done_at)
        first, last = int(0.1 * count), int(0.9 * count) - 1
        if last <= first or self.done_at[last] <= self.done_at[first]:
            return None
        return (last - first) / (self.done_at[last] - self.done_at[first])


def _wait_stream(client: Any, key: str, count: int, worker: Any, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while int(client.xlen(key)) < count:
        if worker.poll() is not None:
            raise WorkerRunError(f"worker exited ({worker.returncode}):\n{process.log_tail(log, 20)}")
        if time.monotonic() > deadline:
            raise WorkerRunError(f"{client.xlen(key)} of {count} posts in Redis after {timeout_s:.0f} s")
        time.sleep(0.05)


def run_worker(
    stack: LocalStack,
    repository: Path,
    model_name: str,
    posts: Sequence[dict[str, str]],
    log: Path,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 600.0,
) -> WorkerMeasurement:
    import redis
    from kafka import KafkaProducer

    tag = uuid.uuid4().hex[:8]
    topic, prefix = f"bench.posts.{tag}", f"bench{tag}"
    create_topics(stack.kafka_bootstrap, {topic: 3}, client_id="bga-mner-bench")
    metrics_port = free_ports(1)[0]
    env = worker_environment(stack, repository, metrics_port)
    env.update(
        {
            "BGA_KAFKA__TOPICS": topic,
            "BGA_KAFKA__DLQ_TOPIC": f"{topic}.dlq",
            "BGA_KAFKA__GROUP_ID": f"bench-{tag}",
            "BGA_REDIS__KEY_PREFIX": prefix,
            "BGA_TRITON__MODEL_NAME": model_name,
            "BGA_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
    )
    services = stack.state.services
    trees = {name: ProcessTree(services[name].pid) for name in ("triton", "kafka", "redis")}
    stream = ResultKeys(prefix).stream
    client = redis.Redis.from_url(stack.redis_url)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=5, acks=1)
    worker = process.spawn(
        [sys.executable, "-m", "bga_mner.cli", "worker"],
        log,
        env=env,
        die_with_parent=True,
    )
    try:
        for index in range(WARMUP_POSTS):
            post = posts[index % len(posts)]
            producer.send(topic, key=f"warm{index}".encode(), value=_value(f"warm{index}", post["text"]))
        producer.flush()
        _wait_stream(client, stream, WARMUP_POSTS, worker, log, 180.0)

        for tree in trees.values():
            tree.start()
        worker_cpu, producer_cpu = cpu_seconds(worker.pid), time.process_time()
        sent: dict[str, float] = {}
        began = time.time()
        for post in posts:
            sent[post["id"]] = time.time()
            producer.send(topic, key=post["id"].encode(), value=_value(post["id"], post["text"]))
        producer.flush()
        producer_cpu = time.process_time() - producer_cpu
        _wait_stream(client, stream, WARMUP_POSTS + len(posts), worker, log, timeout_s)
        cpu = {name: tree.stop() for name, tree in trees.items()}
        cpu["worker"] = cpu_seconds(worker.pid) - worker_cpu
        cpu["producer"] = producer_cpu
        latencies, done_at, last = [], [], began
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream, "-", "+")  # type: ignore[assignment]
        for entry_id, fields in entries:
            post_id = fields[b"id"].decode()
            if post_id in sent:
                at = int(entry_id.decode().split("-")[0]) / 1000.0
                latencies.append(at - sent[post_id])
                done_at.append(at)
                last = max(last, at)
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        return WorkerMeasurement(
            last - began, cpu, peak_rss_bytes(worker.pid), latencies, metrics, sorted(done_at)
        )
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except Exception:
                worker.kill()
                worker.wait(10)
        producer.close()
        client.close()


def _value(post_id: str, text: str) -> bytes:
    return json.dumps({"id": post_id, "text": text}, ensure_ascii=False).encode()
