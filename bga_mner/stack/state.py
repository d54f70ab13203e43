"""The stack's one JSON state file: which processes `up` started, on which ports, logging where.

`down` and `status` trust nothing but this file, so they act on exactly the processes this state
directory started, even from another shell or after the starting process exited.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

STATE_FILE = "stack.json"
LOCK_FILE = ".lock"
DEFAULT_STATE_DIR = ".stack"
STATE_DIR_ENV = "BGA_STACK_DIR"


class ServiceRecord(BaseModel):
    """One started process. ``start_ticks`` guards against acting on a recycled pid."""

    name: str
    pid: int
    start_ticks: int | None = None
    argv: list[str]
    ports: dict[str, int]
    endpoints: dict[str, str] = Field(description="environment variable name -> value, for clients")
    log: str
    started_at: float
    settings: dict[str, str] = Field(default_factory=dict, description="options it was started with")


class StackState(BaseModel):
    schema_version: int = 1
    services: dict[str, ServiceRecord] = Field(default_factory=dict)


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def load_state(state_dir: Path) -> StackState:
    path = state_dir / STATE_FILE
    if not path.exists():
        return StackState()
    return StackState.model_validate_json(path.read_text(encoding="utf-8"))


def save_state(state_dir: Path, state: StackState) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one state directory (two shells, or a test and a human)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
