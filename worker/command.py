"""`bga-mner worker`: the streaming service (Kafka -> Triton -> Redis).

Configuration comes from the environment (``BGA_`` prefix, see docs/worker.md); the few flags
here override it for local runs. Start-up fails fast (exit 2) when the settings are invalid, the
model repository cannot be read, or Triton serves a model that disagrees with it: a worker that
starts must be able to tag correctly. SIGTERM or SIGINT stop polling and drain; a second signal
abandons the drain.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import SecretStr, ValidationError

from worker.settings import WorkerSettings

log = logging.getLogger("worker")

EXIT_STARTUP = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository", type=Path, help="exported model repository (BGA_MODEL_REPOSITORY)"
    )
    parser.add_argument(
        "--bootstrap-servers", help="Kafka host:port[,host:port] (BGA_KAFKA__BOOTSTRAP_SERVERS)"
    )
    parser.add_argument(
        "--topic", action="append", dest="topics", help="input topic, repeatable (BGA_KAFKA__TOPICS)"
    )
    parser.add_argument("--group-id", help="consumer group (BGA_KAFKA__GROUP_ID)")
    parser.add_argument("--dlq-topic", help="dead-letter topic (BGA_KAFKA__DLQ_TOPIC)")
    parser.add_argument("--triton-url", help="Triton gRPC host:port (BGA_TRITON__URL)")
    parser.add_argument("--redis-url", help="redis:// or rediss:// URL (BGA_REDIS__URL)")
    parser.add_argument(
        "--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (BGA_METRICS_PORT)"
    )
    parser.add_argument(
        "--max-batch-size", type=int, help="posts per micro-batch (BGA_BATCHING__MAX_BATCH_SIZE)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ... (BGA_LOG_LEVEL)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Flags as init values; pydantic-settings deep-merges them over the environment's values."""
    sections: dict[str, dict[str, Any]] = {"kafka": {}, "triton": {}, "redis": {}, "batching": {}}
    top: dict[str, Any] = {}
    if args.model_repository is not None:
        top["model_repository"] = args.model_repository
    if args.bootstrap_servers is not None:
        sections["kafka"]["bootstrap_servers"] = args.bootstrap_servers
    if args.topics:
        sections["kafka"]["topics"] = args.topics
    if args.group_id is not None:
        sections["kafka"]["group_id"] = args.group_id
    if args.dlq_topic is not None:
        sections["kafka"]["dlq_topic"] = args.dlq_topic
    if args.triton_url is not None:
        sections["triton"]["url"] = args.triton_url
    if args.redis_url is not None:
        sections["redis"]["url"] = args.redis_url
    if args.max_batch_size is not None:
        sections["batching"]["max_batch_size"] = args.max_batch_size
    if args.metrics_port is not None:
        top["metrics_port"] = args.metrics_port
    if args.log_level is not None:
        top["log_level"] = args.log_level.upper()
    return {**top, **{name: values for name, values in sections.items() if values}}


def secret_values(settings: WorkerSettings) -> list[str]:
    """Every secret in the settings, for the log formatter's second line of defence."""
    found: list[str] = []

    def visit(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif hasattr(value, "__pydantic_fields__"):
            for name in type(value).__pydantic_fields__:
                visit(getattr(value, name))

    visit(settings)
    return [s for s in found if s]


def run(args: argparse.Namespace) -> int:
    try:
        settings = WorkerSettings(**overrides_from_args(args))
    except ValidationError as exc:
        sys.stderr.write(f"bga-mner worker: invalid configuration:\n{exc}\n")
        return EXIT_STARTUP
    from worker.observability.logging import configure_logging

    configure_logging(settings.log_level, secrets=secret_values(settings))
    log.info("starting worker", extra={"fields": {"settings": settings.model_dump(mode="json")}})
    from worker.errors import StartupError
    from worker.pipeline.service import start_worker

    try:
        service = start_worker(settings)
    except StartupError as exc:
        log.critical("cannot start: %s", exc)
        return EXIT_STARTUP

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received: stopping", signal.Signals(signum).name)
        service.runner.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return service.runner.run()
    finally:
        service.close()
