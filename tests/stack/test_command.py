"""`bga-mner stack up|status|down` as a user runs it: a separate process each time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def bga_mner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bga_mner.cli", "stack", *args], capture_output=True, text=True, timeout=120
    )


def test_up_status_down_by_hand(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    up = bga_mner("up", "--state-dir", state)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        assert exports["BGA_KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")
        assert exports["BGA_REDIS_URL"].startswith("redis://127.0.0.1:")
        assert exports["BGA_TRITON_GRPC"].startswith("127.0.0.1:")
        assert (tmp_path / "state" / "env").read_text().count("export ") == len(exports)

        again = bga_mner("up", "--state-dir", state)
        assert again.returncode == 0 and again.stdout == up.stdout
        assert again.stderr.count("already running") == 3

        status = bga_mner("status", "--state-dir", state)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" alive ") == 3
        assert exports["BGA_TRITON_GRPC"] in status.stdout
    finally:
        down = bga_mner("down", "--state-dir", state)
    assert down.returncode == 0 and down.stdout.strip() == "stopped: triton, redis, kafka"
    after = bga_mner("status", "--state-dir", state)
    assert after.returncode == 1 and "no stack recorded" in after.stdout


def test_a_failed_up_exits_nonzero_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-redis-here"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bga_mner.cli",
            "stack",
            "up",
            "--only",
            "redis",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BGA_REDIS_SERVER": str(missing)},
    )
    assert result.returncode == 2
    assert f"cannot execute {missing}" in result.stderr
