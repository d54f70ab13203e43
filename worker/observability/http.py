"""/metrics, /healthz and /readyz on one port, for Prometheus and Kubernetes probes.

Liveness and readiness answer different questions: /healthz fails only when the loop is stuck
(its heartbeat is stale), so Kubernetes restarts a wedged process but not one waiting out a
Triton outage; /readyz says "this process can do work": it started its loop and is not draining.
It deliberately ignores dependencies and partition ownership: a surplus worker without partitions
during a rollout must become ready (or the rollout stalls), and an outage of Triton or Redis must
not make every pod unready at once (drains would hang behind the PodDisruptionBudget). Dependency
state is in the metrics (``bga_mner_dependency_up``, the circuit breaker) and alerts instead.
A stdlib server in a daemon thread is enough for a scrape every few seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from worker.observability.metrics import WorkerMetrics

log = logging.getLogger(__name__)

READINESS_CHECKS = ("loop",)


class Health:
    """State the loop updates and the probes read; every method is thread-safe.

    A readiness check is either set (``set_check``) or pulled on each probe (``add_probe``);
    a check never reported counts as not ready.
    """

    def __init__(
        self,
        heartbeat_timeout_s: float = 60.0,
        required: Iterable[str] = READINESS_CHECKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout_s = heartbeat_timeout_s
        self._required = tuple(required)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._checks: dict[str, tuple[bool, str]] = {}
        self._probes: dict[str, Callable[[], bool]] = {}

    def beat(self) -> None:
        """Called by the loop on every iteration, also when idle."""
        with self._lock:
            self._last_beat = self._clock()

    def set_check(self, name: str, ok: bool, detail: str = "") -> None:
        with self._lock:
            self._checks[name] = (ok, detail)

    def add_probe(self, name: str, probe: Callable[[], bool]) -> None:
        with self._lock:
            self._probes[name] = probe

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            age = self._clock() - self._last_beat
        return age <= self._timeout_s, {"heartbeat_age_s": round(age, 3), "timeout_s": self._timeout_s}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks = dict(self._checks)
            probes = dict(self._probes)
        report: dict[str, Any] = {}
        for name in sorted(set(self._required) | set(checks) | set(probes)):
            if name in probes:
                try:
                    ok, detail = bool(probes[name]()), ""
                except Exception as exc:  # a probe must never take the endpoint down
                    ok, detail = False, f"probe failed: {exc}"
            else:
                ok, detail = checks.get(name, (False, "not reported yet"))
            report[name] = {"ok": ok, **({"detail": detail} if detail else {})}
        alive, _ = self.liveness()
        report["heartbeat"] = {"ok": alive}
        return all(entry["ok"] for entry in report.values()), report


class HealthServer:
    """A running endpoint server; ``close()`` stops it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, metrics: WorkerMetrics, health: Health, host: str = "0.0.0.0") -> HealthServer:
    """Start serving in a daemon thread; ``port=0`` picks a free one (see ``HealthServer.port``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(HTTPStatus.OK, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, report = health.liveness()
                self._send_json(ok, report)
            elif path == "/readyz":
                ok, report = health.readiness()
                self._send_json(ok, report)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _send_json(self, ok: bool, report: dict[str, Any]) -> None:
            body = json.dumps({"ok": ok, **report}).encode() + b"\n"
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, body, "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="worker-http", daemon=True)
    thread.start()
    return HealthServer(server, thread)
