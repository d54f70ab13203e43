"""The fault-injection rig: a real worker process against a broker, Redis and Triton behind proxies.

Every connection the worker makes goes through a ``FaultProxy`` on 127.0.0.1: the broker's (it is a
broker of this rig's own, which advertises the proxy's address, so metadata sends clients back
through the proxy too), Redis's and Triton's (the session stack's, each behind a proxy of its own).
Faults come from the processes themselves (SIGKILL, SIGSTOP) and from the proxies (refuse, black
hole, cut), so outages never cost the in-memory broker its data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from bga_mner.results import ResultsReader
from bga_mner.stack.kafka import broker_binary
from bga_mner.stack.local import LocalStack
from bga_mner.stack.ports import free_ports, is_listening
from tests.integration.worker_support import (
    committed_offsets,
    end_offsets,
    expected_trending,
    produce_posts,
    trending_counts,
    wait_until,
    worker_environment,
    worker_settings,
)
from tests.reliability.proxy import FaultProxy
from worker.settings import WorkerSettings
from worker.sinks.redis_sink import RedisSink


class ProxiedBroker:
    """A Tansu broker of its own whose advertised address is the proxy's: all traffic crosses it."""

    def __init__(self, workdir: Path, selector: Callable[[bytes], bool] | None = None) -> None:
        (real_port,) = free_ports(1)
        self.proxy = FaultProxy(real_port, selector=selector).start()
        self.bootstrap = f"127.0.0.1:{self.proxy.port}"
        url = f"tcp://127.0.0.1:{real_port}"
        advertised = f"tcp://127.0.0.1:{self.proxy.port}"
        self._log = (workdir / "broker.log").open("ab")
        self._process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: is_listening(real_port), 30, "the rig's broker to listen")

    def create_topic(self, partitions: int) -> str:
        name = f"rel-{uuid.uuid4().hex[:10]}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=15_000)
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            admin.close()
        return name

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self.proxy.stop()
        self._log.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Rig:
    """One test's worker deployment: settings pointing at the proxies, and its processes."""

    stack: LocalStack
    broker: ProxiedBroker
    redis_proxy: FaultProxy
    triton_proxy: FaultProxy
    settings: WorkerSettings
    workdir: Path
    posts: list[dict[str, Any]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.settings.kafka.topics[0]

    @property
    def log(self) -> Path:
        return self.workdir / "worker.log"

    def produce(self, posts: Sequence[dict[str, Any]]) -> None:
        produce_posts(self.broker.bootstrap, self.topic, posts)
        self.posts.extend(posts)

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGA_")}
        env.update(worker_environment(self.settings))
        with self.log.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "bga_mner.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
        worker.send_signal(signal.SIGTERM)
        return worker.wait(timeout=timeout_s)

    # -- what the stream produced (read directly, never through a proxy) ------------------------------
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.stack.redis_url)

    def reader(self, client: redis.Redis) -> ResultsReader:
        return ResultsReader(client, self.settings.redis.key_prefix)

    def stored(self, ids: Sequence[str] | None = None) -> int:
        wanted = [p["id"] for p in self.posts] if ids is None else list(ids)
        client = self.client()
        try:
            keys = self.reader(client).keys
            return sum(
                int(client.exists(*(keys.post(i) for i in wanted[n : n + 500])))
                for n in range(0, len(wanted), 500)
            )
        finally:
            client.close()

    def committed(self) -> dict[int, int]:
        return committed_offsets(self.broker.bootstrap, self.settings.kafka.group_id, self.topic)

    def all_committed(self) -> bool:
        return self.committed() == end_offsets(self.topic)

    def audit(self) -> dict[str, int]:
        """Lost, duplicated and miscounted posts, read back from Redis: every count must be 0."""
        client = self.client()
        try:
            reader = self.reader(client)
            records = {p["id"]: reader.record(p["id"]) for p in self.posts}
            lost = [post_id for post_id, record in records.items() if record is None]
            entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(reader.keys.stream)  # type: ignore[assignment]
            stream_ids = Counter(fields[b"id"].decode() for _, fields in entries)
            sink = RedisSink(client, self.settings.redis)
            expected = expected_trending((i, r["entities"]) for i, r in records.items() if r is not None)
            counted = trending_counts(sink)
            return {
                "posts": len(self.posts),
                "stored": len(records) - len(lost),
                "lost": len(lost),
                "streamed_twice": sum(1 for n in stream_ids.values() if n > 1),
                "missing_from_stream": len(set(records) - set(stream_ids)),
                "trending_miscounts": sum(((expected - counted) + (counted - expected)).values()),
            }
        finally:
            client.close()

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                with_signal(worker, signal.SIGCONT)
                worker.kill()
                worker.wait(timeout=10)
        self.redis_proxy.stop()
        self.triton_proxy.stop()


def with_signal(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        process.send_signal(signum)


@contextmanager
def rig(
    stack: LocalStack,
    broker: ProxiedBroker,
    workdir: Path,
    model: tuple[Path, str],
    *,
    partitions: int = 3,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Iterator[Rig]:
    redis_port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    triton_port = int(stack.triton_grpc.rsplit(":", 1)[1])
    redis_proxy = FaultProxy(redis_port).start()
    triton_proxy = FaultProxy(triton_port).start()
    topic = broker.create_topic(partitions)
    settings = worker_settings(
        bootstrap=broker.bootstrap,
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0",
        topic=topic,
        group=f"{topic}-group",
        dlq_topic=broker.create_topic(1),
        key_prefix=f"rel{uuid.uuid4().hex[:8]}",
        model_repository=model[0],
        model_name=model[1],
        triton_url=f"127.0.0.1:{triton_proxy.port}",
        sections={"triton": {"timeout_s": 3.0, "circuit_reset_s": 2.0}, **(sections or {})},
    )
    workdir.mkdir(parents=True, exist_ok=True)
    the_rig = Rig(stack, broker, redis_proxy, triton_proxy, settings, workdir)
    try:
        yield the_rig
    finally:
        the_rig.close()


def progress(rig_: Rig) -> int:
    """Messages committed so far (sum over partitions)."""
    return sum(rig_.committed().values())


def time_to_progress(rig_: Rig, after: int, timeout_s: float) -> float:
    """Seconds until the committed total passes ``after`` (the recovery time after a fault)."""
    started = time.monotonic()
    wait_until(lambda: progress(rig_) > after, timeout_s, "the worker to commit again", interval_s=0.1)
    return time.monotonic() - started


def worker_log_tail(rig_: Rig, lines: int = 40) -> str:
    text = rig_.log.read_text(errors="replace") if rig_.log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def dead_letter_reasons(rig_: Rig, expected: int, timeout_s: float = 30.0) -> dict[str, str]:
    """post key -> the DLQ's reason header, for the dead letters of the rig's DLQ topic."""
    from tests.integration.worker_support import read_topic

    records = read_topic(
        rig_.broker.bootstrap, rig_.settings.kafka.dlq_topic, expected=expected, timeout_s=timeout_s
    )
    return {
        (r.key or b"").decode(errors="replace"): dict(r.headers)["bga.error.reason"].decode() for r in records
    }


def jsonl(values: Sequence[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(v) for v in values)
