"""Fixtures shared by the training tests: the benchmark data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bga_mner.paths import data_dir


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    path = data_dir()
    if path is None or not (path / "twitter2015" / "test.txt").is_file():
        pytest.skip("Twitter MNER data not found (set BGA_DATA_DIR or provide ../shared/data)")
    return path
