"""Builds a running worker from ``WorkerSettings``: model repository, Triton, Redis, Kafka, probes.

Kept apart from the loop so the loop can be driven with other taggers and sinks, and apart from
the CLI so tests can start a worker in-process. Every dependency is checked here, before the
first poll: a worker that joins the group must be able to tag and write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bga_mner.errors import ConfigurationError
from worker.errors import StartupError
from worker.kafka.consumer import create_consumer, create_producer
from worker.kafka.dead_letter import DeadLetterQueue
from worker.observability.http import Health, HealthServer, serve
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.runner import StreamRunner
from worker.settings import LIVENESS_FLOOR_S, WorkerSettings

if TYPE_CHECKING:
    from worker.sinks.redis_sink import RedisSink

log = logging.getLogger(__name__)


@dataclass
class WorkerService:
    runner: StreamRunner
    sink: RedisSink
    metrics: WorkerMetrics
    health: Health
    http: HealthServer | None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # closing one thing must not keep the others open
                log.warning("error while closing: %r", exc)


def start_worker(settings: WorkerSettings, serve_http: bool = True) -> WorkerService:
    """Open the model repository, check Triton and Redis, create the Kafka clients, start the probes."""
    from bga_mner.model_repository import open_repository
    from bga_mner.tagging import Tagger
    from worker.images import FetchingImages, ImageFetcher
    from worker.inference.triton import TritonBackend
    from worker.sinks.redis_sink import RedisSink, redis_client

    metrics = WorkerMetrics()
    health = Health(heartbeat_timeout_s=max(float(LIVENESS_FLOOR_S), settings.shutdown_grace_s * 2))
    closers: list[Callable[[], None]] = []
    http = serve(settings.metrics_port, metrics, health) if serve_http else None
    if http is not None:
        closers.append(http.close)
        log.info("serving /metrics, /healthz, /readyz", extra={"fields": {"port": http.port}})
    try:
        version = int(settings.triton.model_version) if settings.triton.model_version else None
        try:
            repository = open_repository(settings.model_repository, settings.triton.model_name, version)
        except (OSError, ConfigurationError) as exc:
            raise StartupError(f"model repository {settings.model_repository}: {exc}") from exc

        backend = TritonBackend(settings.triton, repository.manifest, metrics=metrics)
        closers.append(backend.close)
        backend.check_model()
        metrics.dependency_up.labels(dependency="triton").set_function(lambda: float(backend.is_ready()))

        fetcher = ImageFetcher(settings.images) if settings.images.fetch_urls else None
        tagger = Tagger(
            repository,
            backend,
            max_batch_size=backend.batch_limit(settings.batching.request_size),
            concurrency=settings.batching.concurrent_requests,
            images=FetchingImages(settings.limits, fetcher),
        )

        client = redis_client(settings.redis)
        closers.append(client.close)
        sink = RedisSink(client, settings.redis, metrics)
        if not sink.ping():
            raise StartupError("Redis does not answer PING (check BGA_REDIS__*)")
        metrics.dependency_up.labels(dependency="redis").set_function(lambda: float(sink.ping()))

        dead_letters = DeadLetterQueue(
            create_producer(settings.kafka, settings.limits),
            settings.kafka.dlq_topic,
            settings.kafka.dlq_send_timeout_s,
        )
        consumer = create_consumer(settings.kafka)
    except StartupError:
        _close_all(closers)
        raise
    except Exception as exc:
        _close_all(closers)
        raise StartupError(f"{type(exc).__name__}: {exc}") from exc
    runner = StreamRunner(settings, consumer, dead_letters, tagger, sink, metrics, health)
    return WorkerService(runner, sink, metrics, health, http, closers)


def _close_all(closers: list[Callable[[], None]]) -> None:
    for closer in reversed(closers):
        try:
            closer()
        except Exception as exc:
            log.warning("error while closing: %r", exc)
