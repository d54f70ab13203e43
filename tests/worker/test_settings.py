"""Configuration from BGA_* variables, flags over the environment, and secrets that never leak."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from worker import command
from worker.kafka import consumer as kafka_clients
from worker.kafka.consumer import consumer_options
from worker.observability.logging import configure_logging
from worker.pipeline.runner import SHUTDOWN_OVERRUN_S
from worker.settings import KafkaSettings, WorkerSettings

PASSWORD = "s3cr3t-Pa55word"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BGA_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid() -> None:
    settings = WorkerSettings()
    assert settings.kafka.topics == ["posts"]
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.images.fetch_urls is False


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_KAFKA__BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    monkeypatch.setenv("BGA_KAFKA__TOPICS", '["a", "b"]')
    monkeypatch.setenv("BGA_IMAGES__ALLOWED_HOSTS", "pbs.twimg.com,cdn.example.org")
    monkeypatch.setenv("BGA_BATCHING__MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("BGA_MODEL_REPOSITORY", "/models")
    monkeypatch.setenv("BGA_TRITON__URL", "triton:8001")
    settings = WorkerSettings()
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.kafka.topics == ["a", "b"]
    assert settings.images.allowed_hosts == ["pbs.twimg.com", "cdn.example.org"]
    assert settings.batching.max_batch_size == 64
    assert settings.model_repository == Path("/models")
    assert settings.triton.url == "triton:8001"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_BATCHING__MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="sasl"):
        WorkerSettings()
    monkeypatch.setenv("BGA_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BGA_KAFKA__SASL_USERNAME", "worker")
    monkeypatch.setenv("BGA_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("BGA_KAFKA__SSL_CAFILE", "/etc/ca.pem")
    options = consumer_options(WorkerSettings().kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "worker"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_cafile"] == "/etc/ca.pem"
    assert options["enable_auto_commit"] is False


def test_flags_override_environment_and_keep_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("BGA_KAFKA__TOPICS", "env-topic")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(
        ["--topic", "t1", "--topic", "t2", "--model-repository", "/m", "--metrics-port", "0"]
    )
    settings = WorkerSettings(**command.overrides_from_args(args))
    assert settings.kafka.topics == ["t1", "t2"]
    assert settings.kafka.group_id == "from-env"
    assert settings.model_repository == Path("/m")
    assert settings.metrics_port == 0


def _secret_settings(monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    monkeypatch.setenv("BGA_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("BGA_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("BGA_KAFKA__SASL_USERNAME", "worker")
    monkeypatch.setenv("BGA_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("BGA_REDIS__PASSWORD", PASSWORD + "-redis")
    monkeypatch.setenv("BGA_REDIS__URL", f"redis://user:{PASSWORD}-url@cache:6379/0")
    return WorkerSettings()


def test_secrets_are_masked_in_repr_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _secret_settings(monkeypatch)
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump(mode="json")),
    ):
        assert PASSWORD not in text
    assert sorted(command.secret_values(settings)) == sorted(
        [PASSWORD, PASSWORD + "-redis", f"redis://user:{PASSWORD}-url@cache:6379/0"]
    )


def test_secrets_never_reach_the_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _secret_settings(monkeypatch)
    stream = io.StringIO()
    configure_logging("DEBUG", secrets=command.secret_values(settings), stream=stream)
    try:
        log = logging.getLogger("test")
        log.info("settings", extra={"fields": {"settings": settings.model_dump(mode="json")}})
        log.info("careless message with %s", settings.kafka.sasl_password.get_secret_value())  # type: ignore[union-attr]
    finally:
        logging.getLogger().handlers.clear()
    assert PASSWORD not in stream.getvalue()
    assert "careless message" in stream.getvalue()


def test_worker_start_up_log_holds_no_secret(tmp_path: Path) -> None:
    """The real entry point logs its settings, then fails on the missing model repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGA_")}
    env.update(
        BGA_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        BGA_KAFKA__SASL_MECHANISM="PLAIN",
        BGA_KAFKA__SASL_USERNAME="worker",
        BGA_KAFKA__SASL_PASSWORD=PASSWORD,
        BGA_REDIS__URL=f"rediss://default:{PASSWORD}@cache:6380/0",
        BGA_MODEL_REPOSITORY=str(tmp_path / "missing"),
        BGA_METRICS_PORT="0",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bga_mner.cli", "worker"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == command.EXIT_STARTUP, result.stderr
    assert "starting worker" in result.stderr
    assert "missing" in result.stderr  # the reason it could not start
    assert PASSWORD not in result.stderr + result.stdout


def _environment_variables(model: type[BaseModel], prefix: str = "BGA_") -> list[str]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _environment_variables(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_variable_is_documented() -> None:
    documented = (REPO_ROOT / "docs" / "worker.md").read_text(encoding="utf-8")
    variables = _environment_variables(WorkerSettings)
    assert len(variables) > 50
    missing = [name for name in variables if f"`{name}`" not in documented]
    assert not missing, f"docs/worker.md lacks: {missing}"


def test_records_must_outlive_the_trending_buckets_they_counted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay after a post's marker expired would count it again in a bucket still alive; a bucket
    may start up to the clock-skew allowance (300 s) in the future, so the marker must outlive that too."""
    monkeypatch.setenv("BGA_REDIS__RECORD_TTL_SECONDS", "3900")
    monkeypatch.setenv("BGA_REDIS__TRENDING_TTL_SECONDS", "3600")
    monkeypatch.setenv("BGA_REDIS__TRENDING_BUCKET_SECONDS", "300")
    with pytest.raises(ValidationError, match="max_clock_skew_s"):
        WorkerSettings()  # enough for a bucket of the past, not for one dated 300 s ahead
    monkeypatch.setenv("BGA_REDIS__RECORD_TTL_SECONDS", "4200")
    assert WorkerSettings().redis.record_ttl_seconds == 4200


def test_the_consumer_reads_only_committed_transactions() -> None:
    """Records of an aborted (or still open) transaction must never be tagged."""
    assert consumer_options(KafkaSettings())["isolation_level"] == "read_committed"


def test_no_kafka_call_may_block_past_the_poll_and_liveness_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="commit_timeout_ms"):
        KafkaSettings(commit_timeout_ms=40_000)  # > half of the 60 s liveness floor
    with pytest.raises(ValidationError, match="dlq_max_block_ms"):
        KafkaSettings(max_poll_interval_ms=10_000, session_timeout_ms=6_000, dlq_max_block_ms=6_000)
    captured: dict[str, object] = {}
    monkeypatch.setattr(kafka_clients, "KafkaProducer", lambda **options: captured.update(options))
    kafka_clients.create_producer(KafkaSettings(dlq_max_block_ms=1_500))
    assert captured["max_block_ms"] == 1_500  # a send never blocks the loop longer
    assert captured["delivery_timeout_ms"] == 30_000


def test_kubernetes_waits_for_the_longest_shutdown() -> None:
    """preStop + the drain grace + the bounded steps after it must fit terminationGracePeriodSeconds."""
    base = REPO_ROOT / "deploy" / "k8s" / "base"
    spec = yaml.safe_load((base / "worker-deployment.yaml").read_text())["spec"]["template"]["spec"]
    config = yaml.safe_load((base / "worker-configmap.yaml").read_text())["data"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    longest = float(pre_stop[1]) + float(config["BGA_SHUTDOWN_GRACE_S"]) + SHUTDOWN_OVERRUN_S
    assert spec["terminationGracePeriodSeconds"] > longest
