"""LocalStack against the real binaries (broker, Redis, Triton), each test with its own state dir."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bga_mner.stack import process
from bga_mner.stack.local import LocalStack, parse_only
from bga_mner.stack.service import StackError

pytestmark = pytest.mark.integration


def test_up_twice_reuses_the_running_services_and_down_stops_exactly_them(tmp_path: Path) -> None:
    import redis

    stack = LocalStack(tmp_path / "state", die_with_parent=True)
    try:
        first = stack.up(only="redis,kafka")
        assert first.started == ["kafka", "redis"]
        pids = {name: record.pid for name, record in first.state.services.items()}
        second = stack.up(only=["kafka", "redis"])
        assert second.started == [] and second.already_running == ["kafka", "redis"]
        assert {name: record.pid for name, record in second.state.services.items()} == pids
        assert all(status.alive for status in stack.status().values())
        client = redis.Redis.from_url(stack.redis_url)
        assert client.ping()
        client.close()
        assert stack.kafka_bootstrap.startswith("127.0.0.1:")
    finally:
        records = list(stack.state.services.values())
        assert sorted(stack.down()) == ["kafka", "redis"]
    assert records and not any(process.is_alive(r.pid, r.start_ticks) for r in records)
    assert stack.status() == {}
    assert stack.down() == []


def test_a_service_that_cannot_start_reports_its_log_and_stops_what_this_call_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL: cannot bind, configuration is broken' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BGA_REDIS_SERVER", str(broken))
    stack = LocalStack(tmp_path / "state", die_with_parent=True)
    with pytest.raises(StackError) as caught:
        stack.up(only="kafka,redis")
    message = str(caught.value)
    assert "\n" not in message  # one line: the reason, then where the full log is
    assert message.startswith("redis did not start (it exited with status 3): FATAL: cannot bind")
    assert "full log:" in message
    assert stack.state.services == {}
    kafka_log = (tmp_path / "state" / "logs" / "kafka.log").read_text()
    assert "start (attempt 1)" in kafka_log  # the broker was started, and rolled back
    assert not _live_brokers_started_in(kafka_log)


def test_a_model_triton_cannot_load_is_reported_in_one_line_with_its_reason(tmp_path: Path) -> None:
    """A newcomer's broken model: Triton exits ("failed to load all models"); `up` says why in one line."""
    version = tmp_path / "models" / "broken" / "1"
    version.mkdir(parents=True)
    (version.parent / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "x", data_type: TYPE_FP32, dims: [1] }]\n'
        'output [{ name: "y", data_type: TYPE_FP32, dims: [1] }]\n'
    )
    (version / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        '        raise RuntimeError("never reached: the stub fails first")\n'
    )
    stack = LocalStack(tmp_path / "state", ready_timeout=60.0, die_with_parent=True)
    with pytest.raises(StackError) as caught:
        stack.up(only="triton", model_repository=tmp_path / "models")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("triton did not start (it exited with status")
    # Without an environment for the python backend, the stub itself cannot import numpy.
    reason = "failed to load 'broken' version 1: Internal: ModuleNotFoundError: No module named 'numpy' ("
    assert reason in message
    assert stack.state.services == {}


def _live_brokers_started_in(log_text: str) -> list[int]:
    """Live processes whose command line holds a listener URL that this log says was started."""
    ports = [
        line.split("tcp://127.0.0.1:")[1].split("'")[0] for line in log_text.splitlines() if "tcp://" in line
    ]
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if any(f"127.0.0.1:{port}" in cmdline for port in ports) and process.is_alive(int(entry.name)):
                alive.append(int(entry.name))
    return alive


def test_triton_that_fails_to_load_its_repository_is_reported(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    (repository / "broken").mkdir(parents=True)
    (repository / "broken" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    stack = LocalStack(tmp_path / "state", die_with_parent=True)
    with pytest.raises(StackError, match="failed to load all models") as caught:
        stack.up(only="triton", model_repository=repository)
    assert "triton did not start" in str(caught.value)
    assert stack.state.services == {}


def test_unknown_services_are_rejected() -> None:
    assert parse_only(None) == ["kafka", "redis", "triton"]
    assert parse_only("triton, kafka") == ["kafka", "triton"]
    with pytest.raises(StackError, match="zookeeper"):
        parse_only("kafka,zookeeper")


def test_the_stack_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_STACK_DIR", str(tmp_path / "from-env"))
    assert LocalStack().state_dir == tmp_path / "from-env"


def test_up_refuses_to_repoint_a_running_triton(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "state", die_with_parent=True)
    try:
        stack.up(only="triton", model_repository=tmp_path / "first")
        with pytest.raises(StackError, match="stack down"):
            stack.up(only="triton", model_repository=tmp_path / "second")
        assert stack.up(only="triton").already_running == ["triton"]  # no repository asked: reuse
        assert stack.model_repository == (tmp_path / "first").resolve()
    finally:
        stack.down()
