"""Where the stack finds its server binaries: explicit override, PATH, then the venv fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bga_mner.stack import redis as redis_service
from bga_mner.stack.service import StackError


def test_redis_binary_prefers_the_override_then_path_then_the_venv_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGA_REDIS_SERVER", "/opt/custom/redis-server")
    assert redis_service.redis_binary() == "/opt/custom/redis-server"

    monkeypatch.delenv("BGA_REDIS_SERVER")
    on_path = tmp_path / "bin" / "redis-server"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert redis_service.redis_binary() == str(on_path)

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(StackError, match=r"scripts/bootstrap\.sh"):
        redis_service.redis_binary()
    fallback = tmp_path / "venv" / "redis-fallback" / "redis_server" / "bin" / "redis-server"
    fallback.parent.mkdir(parents=True)
    fallback.write_text("#!/bin/sh\n")
    assert redis_service.redis_binary() == str(fallback)
