"""CPU time and peak memory of processes, from the kernel's own accounting (Linux /proc, wait4).

Every system is measured as whole processes: a child the benchmark starts and reaps (``run_child``:
its user + system CPU and peak RSS from ``wait4``), or a long-running server whose CPU seconds are
read from ``/proc/<pid>/stat`` before and after a run (``ProcessTree``: the process and all its
descendants, e.g. tritonserver and its python-backend stubs).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    cpu_s: float  # user + system, the child and the descendants it reaped
    peak_rss_bytes: int
    returncode: int


def run_child(
    argv: Sequence[str], stdout: Path, env: Mapping[str, str] | None = None, stderr: Path | None = None
) -> ChildRun:
    """Run ``argv`` to completion, stdout to a file; its CPU and peak RSS from ``wait4``."""
    with stdout.open("wb") as out, (stderr or Path(os.devnull)).open("wb") as err:
        began = time.perf_counter()
        child = subprocess.Popen(list(argv), stdout=out, stderr=err, env=dict(env) if env else None)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, child.returncode)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields after "pid (comm)"; [0] is the state


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0 when it is gone)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM) so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


class ProcessTree:
    """CPU seconds of a process and its descendants between ``start()`` and ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {p: cpu_seconds(p) for p in descendants(self.pid)}

    def stop(self) -> float:
        now = {p: cpu_seconds(p) for p in descendants(self.pid)}
        return sum(seconds - self._before.get(p, 0.0) for p, seconds in now.items())

    def peak_rss_bytes(self) -> int:
        """Sum of the peak RSS of each process of the tree (an upper bound of the tree's peak)."""
        return sum(peak_rss_bytes(p) for p in descendants(self.pid))
