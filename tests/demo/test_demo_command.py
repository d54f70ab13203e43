"""`bga-mner demo` end to end as a user runs it, on the tiny model repository (training and export skipped).

The demo starts its own local stack and worker, so these tests check the user-visible promises:
every valid post reaches Redis, the malformed ones reach the dead-letter topic with their reasons,
the group commits to the end of the topic, the worker exits 0 on SIGTERM, and no process is left
behind, also when the demo itself is interrupted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bga_mner.stack import process

pytestmark = pytest.mark.integration


def _environment() -> dict[str, str]:
    # Wide, unbuffered output so lines can be matched while the demo runs.
    return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def _demo_argv(repository: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bga_mner.cli",
        "demo",
        "--model-repository",
        str(repository),
        "--out",
        str(out),
        "--tweets",
        "0",
        "--timeout",
        "120",
    ]


def _processes_mentioning(*needles: str) -> list[str]:
    """Live processes whose command line names one of ``needles`` (our servers name their paths)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles) and process.is_alive(int(entry.name)):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _assert_nothing_left(out: Path, repository: Path, output: str) -> None:
    worker = re.search(r"worker pid (\d+)", output)
    if worker:
        assert not process.is_alive(int(worker.group(1))), "the worker outlived the demo"
    deadline = time.monotonic() + 10
    while (left := _processes_mentioning(str(out), str(repository))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"


def test_demo_streams_posts_through_the_real_stack(tiny_model_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        _demo_argv(tiny_model_repository, out),
        capture_output=True,
        text=True,
        timeout=240,
        env=_environment(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "posts in Redis" in output
    assert re.search(r"posts tagged\s+50\b", output), output[-4000:]
    assert re.search(r"dead-lettered\s+3 \(invalid_json 1, oversize 1, schema 1\)", output), output[-4000:]
    assert "committed offsets 53 of 53" in output
    assert "exit code 0" in output
    assert "50 records in Redis" in output
    for reason in ("invalid_json", "schema", "oversize"):
        assert reason in output.split("Dead-letter topic")[1]
    assert "Trending entities" in output
    assert "demo finished" in output
    assert (out / "logs" / "worker.log").is_file()
    _assert_nothing_left(out, tiny_model_repository, output)


def test_interrupted_demo_stops_the_stack_and_the_worker(tiny_model_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    child = subprocess.Popen(
        _demo_argv(tiny_model_repository, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(),
    )
    assert child.stdout is not None
    lines = []
    try:
        for line in child.stdout:
            lines.append(line)
            if line.startswith("worker pid"):  # stack up, worker started, posts streaming
                child.send_signal(signal.SIGTERM)
                break
        lines.extend(child.stdout)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    output = "".join(lines)
    assert code == 130, output[-4000:]
    assert "interrupted" in output
    _assert_nothing_left(out, tiny_model_repository, output)


def test_a_worker_that_cannot_start_fails_the_demo_and_stops_everything(tmp_path: Path) -> None:
    empty = tmp_path / "empty_repository"
    empty.mkdir()
    out = tmp_path / "demo"
    result = subprocess.run(
        _demo_argv(empty, out), capture_output=True, text=True, timeout=180, env=_environment()
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "the worker exited with code 2" in output  # exit 2: cannot start (no model in the repository)
    assert "model repository" in output  # the worker log's reason is shown, not only its path
    _assert_nothing_left(out, empty, output)
