"""Metrics, probes and logs as an operator sees them: over real HTTP and as JSON lines."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from worker.observability.http import Health, HealthServer, serve
from worker.observability.logging import REDACTED, JsonFormatter, configure_logging
from worker.observability.metrics import WorkerMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(clock: FakeClock) -> Iterator[tuple[HealthServer, WorkerMetrics, Health]]:
    metrics = WorkerMetrics()
    health = Health(heartbeat_timeout_s=30, clock=clock)
    server = serve(0, metrics, health, host="127.0.0.1")
    yield server, metrics, health
    server.close()


def test_metrics_endpoint_exposes_every_series(endpoint: tuple[HealthServer, WorkerMetrics, Health]) -> None:
    server, metrics, _ = endpoint
    metrics.consumed.labels(topic="posts").inc(3)
    metrics.tagged.inc(2)
    metrics.dead_lettered.labels(reason="invalid_json").inc()
    metrics.batch_size.observe(32)
    metrics.triton_latency_seconds.observe(0.012)
    metrics.redis_latency_seconds.observe(0.002)
    metrics.end_to_end_latency_seconds.observe(0.5)
    metrics.in_flight.set(2)
    metrics.consumer_lag.labels(topic="posts", partition="1").set(17)
    metrics.errors.labels(stage="inference").inc()

    status, body = _get(server.port, "/metrics")
    assert status == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("bga_mner_posts_consumed_total", (("topic", "posts"),))] == 3
    assert samples[("bga_mner_posts_tagged_total", ())] == 2
    assert samples[("bga_mner_dead_letter_total", (("reason", "invalid_json"),))] == 1
    assert samples[("bga_mner_batch_size_count", ())] == 1
    assert samples[("bga_mner_triton_latency_seconds_sum", ())] == pytest.approx(0.012)
    assert samples[("bga_mner_redis_latency_seconds_count", ())] == 1
    assert samples[("bga_mner_end_to_end_latency_seconds_count", ())] == 1
    assert samples[("bga_mner_in_flight_requests", ())] == 2
    assert samples[("bga_mner_consumer_lag", (("partition", "1"), ("topic", "posts")))] == 17
    assert samples[("bga_mner_errors_total", (("stage", "inference"),))] == 1


def test_each_worker_metrics_has_its_own_registry() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()  # would raise "Duplicated timeseries" if shared
    first.tagged.inc()
    assert b"bga_mner_posts_tagged_total 1.0" in first.exposition()
    assert b"bga_mner_posts_tagged_total 0.0" in second.exposition()


def test_healthz_follows_the_heartbeat(
    endpoint: tuple[HealthServer, WorkerMetrics, Health], clock: FakeClock
) -> None:
    server, _, health = endpoint
    assert _get(server.port, "/healthz")[0] == 200
    clock.now += 31
    status, body = _get(server.port, "/healthz")
    assert status == 503
    assert json.loads(body)["heartbeat_age_s"] == pytest.approx(31)
    health.beat()
    assert _get(server.port, "/healthz")[0] == 200


def test_readyz_means_the_loop_runs_and_ignores_dependencies(
    endpoint: tuple[HealthServer, WorkerMetrics, Health],
) -> None:
    """Ready = this process can do work; Triton, Redis or partition ownership never make it unready."""
    server, _, health = endpoint
    status, body = _get(server.port, "/readyz")
    assert status == 503
    assert json.loads(body)["loop"] == {"ok": False, "detail": "not reported yet"}
    health.set_check("loop", True)
    assert _get(server.port, "/readyz")[0] == 200
    health.set_check("loop", False, "draining")
    status, body = _get(server.port, "/readyz")
    assert status == 503 and json.loads(body)["loop"]["detail"] == "draining"


def test_a_failing_probe_reports_not_ready(endpoint: tuple[HealthServer, WorkerMetrics, Health]) -> None:
    server, _, health = endpoint
    health.set_check("loop", True)

    def broken() -> bool:
        raise RuntimeError("boom")

    health.add_probe("extra", broken)
    status, body = _get(server.port, "/readyz")
    assert status == 503
    assert "boom" in json.loads(body)["extra"]["detail"]
    assert _get(server.port, "/nope")[0] == 404


def _log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logs_are_json_lines_with_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        logging.getLogger("worker.test").info("batch done", extra={"fields": {"posts": 32, "partition": 1}})
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("worker.test").exception("failed")
        logging.getLogger("worker.test").debug("hidden")
    finally:
        logging.getLogger().handlers.clear()
    first, second = _log_lines(stream)
    assert first["message"] == "batch done"
    assert first["level"] == "INFO"
    assert first["logger"] == "worker.test"
    assert first["posts"] == 32 and first["partition"] == 1
    assert "ValueError: bad" in second["exception"]


def test_secrets_never_reach_the_log() -> None:
    password = 'hunter2"pa$$'
    secret = SecretStr(password)
    stream = io.StringIO()
    configure_logging("INFO", secrets=[password], stream=stream)
    try:
        log = logging.getLogger("worker.test")
        log.info("settings", extra={"fields": {"redis_password": secret, "sasl": str(secret)}})
        log.info("connecting to %s", f"redis://worker:{password}@redis:6379/0")
        log.info("raw leak %s", password, extra={"fields": {"raw": password}})
        log.info("other url rediss://user:s3cr3t@cache:6380")
    finally:
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert password not in text
    assert json.dumps(password)[1:-1] not in text
    assert "s3cr3t" not in text
    assert REDACTED in text
    lines = _log_lines(stream)
    assert lines[1]["message"] == f"connecting to redis://worker:{REDACTED}@redis:6379/0"


def test_formatter_redacts_overlapping_secrets_whole() -> None:
    formatter = JsonFormatter(secrets=["abc", "abcdef"])
    assert formatter.redact("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"
