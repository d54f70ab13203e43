"""Step 5: `bga-mner worker` as a subprocess configured by BGA_* variables, watched via Redis and /metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bga_mner.demo.commands import child_environment
from bga_mner.demo.layout import DLQ_TOPIC, GROUP, KEY_PREFIX, MODEL_NAME, TOPIC, DemoError

if TYPE_CHECKING:
    from rich.console import Console

    from bga_mner.stack import LocalStack


# kafka-python makes max_poll_interval_ms the group's rebalance timeout and the broker holds the
# first join that long (ENVIRONMENT.md): seconds, not the default five minutes.
FAST_GROUP_ENV = {
    "BGA_KAFKA__MAX_POLL_INTERVAL_MS": "10000",
    "BGA_KAFKA__SESSION_TIMEOUT_MS": "6000",
    "BGA_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
    "BGA_KAFKA__REQUEST_TIMEOUT_MS": "15000",
}
WORKER_GRACE_S = 10.0


def worker_environment(stack: LocalStack, repository: Path, metrics_port: int) -> dict[str, str]:
    """The worker is configured only by BGA_* variables, as in production (docs/worker.md)."""
    env = {k: v for k, v in child_environment().items() if not k.startswith("BGA_")}
    env.update(stack.environment())
    env.update(FAST_GROUP_ENV)
    env.update(
        {
            "BGA_KAFKA__TOPICS": TOPIC,
            "BGA_KAFKA__DLQ_TOPIC": DLQ_TOPIC,
            "BGA_KAFKA__GROUP_ID": GROUP,
            "BGA_KAFKA__POLL_TIMEOUT_MS": "100",
            "BGA_TRITON__MODEL_NAME": MODEL_NAME,
            "BGA_MODEL_REPOSITORY": str(repository.resolve()),
            "BGA_REDIS__KEY_PREFIX": KEY_PREFIX,
            "BGA_METRICS_PORT": str(metrics_port),
            "BGA_SHUTDOWN_GRACE_S": str(WORKER_GRACE_S),
        }
    )
    return env


def scrape(url: str) -> dict[str, float]:
    """The worker's /metrics now; {} when it does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return parse_samples(response.read().decode())
    except OSError:
        return {}


def parse_samples(exposition: str) -> dict[str, float]:
    """Prometheus text format as {'name{label="v"}': value} (labels sorted), e.g. for metric_sum."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def metric_sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def summarise_metrics(samples: dict[str, float]) -> list[tuple[str, str]]:
    """The handful of values a person checks first, from the raw samples."""

    def mean(name: str, scale: float = 1.0, unit: str = "") -> str:
        count = metric_sum(samples, f"bga_mner_{name}_count")
        total = metric_sum(samples, f"bga_mner_{name}_sum")
        return f"{scale * total / count:.1f}{unit} (n={count:.0f})" if count else "-"

    reasons = {
        k.split('reason="')[1].rstrip('"}'): v
        for k, v in samples.items()
        if k.startswith("bga_mner_dead_letter_total{") and 'reason="' in k
    }
    dead = ", ".join(f"{r} {v:.0f}" for r, v in sorted(reasons.items()))
    return [
        ("posts consumed", f"{metric_sum(samples, 'bga_mner_posts_consumed_total'):.0f}"),
        ("posts tagged", f"{metric_sum(samples, 'bga_mner_posts_tagged_total'):.0f}"),
        (
            "dead-lettered",
            f"{metric_sum(samples, 'bga_mner_dead_letter_total'):.0f}" + (f" ({dead})" if dead else ""),
        ),
        ("mean batch size", mean("batch_size")),
        ("mean Triton latency", mean("triton_latency_seconds", 1000.0, " ms")),
        ("mean Redis latency", mean("redis_latency_seconds", 1000.0, " ms")),
        ("mean end-to-end latency", mean("end_to_end_latency_seconds", 1.0, " s")),
    ]


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str

    def stop(self, timeout_s: float = WORKER_GRACE_S + 15.0) -> int:
        """SIGTERM (drain and commit), then SIGKILL if it overstays; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def start_worker(stack: LocalStack, repository: Path, log: Path) -> WorkerRun:
    from bga_mner.stack import process
    from bga_mner.stack.ports import free_ports

    port = free_ports(1)[0]
    argv = [sys.executable, "-m", "bga_mner.cli", "worker"]
    log.unlink(missing_ok=True)
    child = process.spawn(argv, log, env=worker_environment(stack, repository, port), die_with_parent=True)
    return WorkerRun(child, log, f"http://127.0.0.1:{port}/metrics")


def wait_for_records(
    console: Console, worker: WorkerRun, redis_url: str, ids: Sequence[str], dead: int, timeout_s: float
) -> None:
    """Until every valid post has its Redis record and the bad ones were dead-lettered."""
    import redis
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bga_mner.stack import process

    client = redis.Redis.from_url(redis_url)
    keys = [f"{KEY_PREFIX}:post:{post_id}" for post_id in ids]
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("posts in Redis", total=len(keys))
            while True:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.exists(key)
                present = sum(int(v) for v in pipe.execute())
                dead_lettered = metric_sum(scrape(worker.metrics_url), "bga_mner_dead_letter_total")
                progress.update(
                    task, completed=present, description=f"posts in Redis (dead-lettered {dead_lettered:.0f})"
                )
                if present == len(keys) and dead_lettered >= dead:
                    return
                if worker.process.poll() is not None:
                    raise DemoError(
                        f"the worker exited with code {worker.process.returncode}; last lines of "
                        f"{worker.log}:\n{process.log_tail(worker.log, 15)}"
                    )
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"only {present} of {len(keys)} posts reached Redis in {timeout_s:.0f} s; "
                        f"see {worker.log}"
                    )
                time.sleep(0.5)
    finally:
        client.close()


def stream_through_worker(
    console: Console,
    stack: LocalStack,
    repository: Path,
    log: Path,
    ids: Sequence[str],
    ends: dict[int, int],
    dead: int,
    timeout_s: float,
) -> None:
    """Run the worker until the stream is done, show its metrics and commits, stop it as Kubernetes would.

    The worker is always stopped here, also when waiting fails or the demo is interrupted.
    """
    from bga_mner.demo.kafka_io import wait_for_commits

    worker = start_worker(stack, repository, log)
    try:
        console.print(
            f"worker pid {worker.process.pid}, metrics at [bold]{worker.metrics_url}[/], log {worker.log}"
        )
        wait_for_records(console, worker, stack.redis_url, ids, dead, timeout_s)
        for name, value in summarise_metrics(scrape(worker.metrics_url)):
            console.print(f"  {name:<24} {value}")
        committed = wait_for_commits(stack.kafka_bootstrap, ends)
        console.print(
            f"committed offsets {sum(committed.values())} of {sum(ends.values())} "
            f"(per partition {dict(sorted(committed.items()))})",
            style=None if committed == ends else "yellow",
        )
        code = worker.stop()
        if code != 0:
            raise DemoError(
                f"the worker exited with code {code} after SIGTERM (expected 0); see {worker.log}"
            )
        console.print("worker stopped by SIGTERM: drained, committed, exit code 0")
    finally:
        worker.stop()
