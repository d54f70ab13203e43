"""Starting, identifying and stopping the stack's server processes (Linux: reads /proc).

Servers run in their own session so that Ctrl-C in the shell that ran `stack up` does not kill
them; `down` stops them, and their children (Triton's python-backend stubs), explicitly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_prctl: Any = None


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the starting thread dies.

    Tests use this so that a killed pytest (SIGKILL, OOM) cannot leave servers behind. prctl was
    resolved in the parent: no dlopen (and its lock) happens in the forked child.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    global _prctl
    if die_with_parent and _prctl is None:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces and parens)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, a unique identity."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, ticks: int | None = None) -> bool:
    """True for a running (not zombie) process that is the one recorded, not a recycled pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return not Path("/proc").is_dir()  # no procfs: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return ticks is None or int(fields[19]) == ticks


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, found through the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _reap(pid: int) -> None:
    """Collect our own dead child so it does not linger as a zombie (no-op for other processes)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def terminate(pid: int, ticks: int | None, grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; then SIGKILL any descendant left behind.

    Returns the pids (the process or its descendants) still alive afterwards: empty unless
    something ignores SIGKILL. Does nothing when pid is not the recorded process any more.
    """
    if not is_alive(pid, ticks):
        _reap(pid)
        return []
    family = {child: start_ticks(child) for child in descendants(pid)}
    _signal(pid, signal.SIGTERM)

    def gone() -> bool:
        _reap(pid)
        return not is_alive(pid, ticks)

    if not _wait_until(gone, grace):
        _signal(pid, signal.SIGKILL)
        _wait_until(gone, 5.0)
    for child, child_ticks in family.items():
        if is_alive(child, child_ticks):
            _signal(child, signal.SIGKILL)

    def survivors() -> list[int]:
        alive = [child for child, child_ticks in family.items() if is_alive(child, child_ticks)]
        return [pid, *alive] if is_alive(pid, ticks) else alive

    _wait_until(lambda: not survivors(), 5.0)
    return survivors()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(empty log at {path})"
