"""Fixtures of the export tests: one tiny real checkpoint and its exports, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bga_mner.cli import main as cli_main
from tests.export.tiny_checkpoint import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))


def export(checkpoint: Path, out: Path, target: str, *extra: str) -> Path:
    """Run `bga-mner export` in-process; returns the repository root."""
    code = cli_main(
        ["export", "--checkpoint", str(checkpoint), "--target", target, "--out", str(out), *extra]
    )
    assert code == 0, f"bga-mner export --target {target} exited with {code}"
    return out


@pytest.fixture(scope="session")
def python_repository(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python-target repository whose model.py runs in this (numpy<2) venv through EXECUTION_ENV_PATH:
    exported as a newcomer would, without --python-env (the default is the exporting environment)."""
    out = tmp_path_factory.mktemp("python_repository")
    return export(
        tiny_checkpoint,
        out,
        "python",
        "--intra-op-threads",
        "1",
        "--max-batch-size",
        "16",
    )


@pytest.fixture(scope="session")
def onnxruntime_repository(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tiny_checkpoint, tmp_path_factory.mktemp("onnxruntime_repository"), "onnxruntime")
