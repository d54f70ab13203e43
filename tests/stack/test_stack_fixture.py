"""The `local_stack` fixture must make a test fail, not skip, when a service cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS_DIR = Path(__file__).resolve().parents[1]


def test_a_test_needing_an_unstartable_stack_errors_instead_of_skipping(tmp_path: Path) -> None:
    (tmp_path / "test_needs_stack.py").write_text("def test_needs_stack(local_stack):\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "BGA_REDIS_SERVER": "/bin/false", "PYTHONPATH": str(TESTS_DIR)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fixtures.stack", "-q", "-rE", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "redis did not start" in result.stdout
