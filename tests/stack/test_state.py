from __future__ import annotations

from pathlib import Path

import pytest

from bga_mner.stack.state import ServiceRecord, StackState, default_state_dir, load_state, save_state


def test_state_round_trips_through_its_json_file(tmp_path: Path) -> None:
    assert load_state(tmp_path) == StackState()
    record = ServiceRecord(
        name="redis",
        pid=123,
        start_ticks=456,
        argv=["redis-server", "--port", "7000"],
        ports={"redis": 7000},
        endpoints={"BGA_REDIS_URL": "redis://127.0.0.1:7000/0"},
        log=str(tmp_path / "logs" / "redis.log"),
        started_at=1.5,
    )
    save_state(tmp_path, StackState(services={"redis": record}))
    assert load_state(tmp_path).services["redis"] == record
    assert not list(tmp_path.glob("*.tmp"))


def test_state_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BGA_STACK_DIR", raising=False)
    assert default_state_dir() == Path(".stack")
    monkeypatch.setenv("BGA_STACK_DIR", "/tmp/elsewhere")
    assert default_state_dir() == Path("/tmp/elsewhere")
