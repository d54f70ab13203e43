from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bga_mner.stack import process


def test_terminate_escalates_to_sigkill_and_kills_descendants(tmp_path: Path) -> None:
    # sh ignores SIGTERM, and so does its background child (ignored signals survive exec).
    child = process.spawn(["sh", "-c", "trap '' TERM; sleep 60 & wait"], tmp_path / "sh.log")
    deadline = time.monotonic() + 5
    while not process.descendants(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    [grandchild] = process.descendants(child.pid)
    ticks = process.start_ticks(child.pid)
    began = time.monotonic()
    assert process.terminate(child.pid, ticks, grace=0.5) == []
    assert time.monotonic() - began < 5
    assert child.poll() is not None
    assert not process.is_alive(grandchild)


def test_a_recycled_pid_is_not_the_recorded_process(tmp_path: Path) -> None:
    child = process.spawn([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "py.log")
    try:
        ticks = process.start_ticks(child.pid)
        assert ticks is not None
        assert process.is_alive(child.pid, ticks)
        assert not process.is_alive(child.pid, ticks + 1)
        assert process.terminate(child.pid, ticks + 1) == []  # not ours: left alone
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert not process.is_alive(child.pid, ticks)


def test_die_with_parent_stops_a_server_when_its_starter_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from bga_mner.stack import process\n"
        "child = process.spawn(['sleep', '60'], Path(sys.argv[1]), die_with_parent=True)\n"
        "print(child.pid, flush=True); sys.stdin.read()\n"
    )
    starter = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "sleep.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert starter.stdout is not None
    pid = int(starter.stdout.readline())
    assert process.is_alive(pid)
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 5
    while process.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.is_alive(pid)


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.log_tail(log, lines=2) == "line 98\nline 99"
    assert "no log" in process.log_tail(tmp_path / "missing.log")
