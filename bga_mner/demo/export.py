"""Step 2: export the checkpoint with `bga-mner export --target python`, or reuse an up-to-date export."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bga_mner.demo.commands import run_child
from bga_mner.demo.layout import MODEL_NAME, MODEL_VERSION, STAMP_FILE, DemoPaths, read_stamp

if TYPE_CHECKING:
    from rich.console import Console


def export_argv(checkpoint: Path, repository: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bga_mner.cli",
        "export",
        "--checkpoint",
        str(checkpoint),
        "--target",
        "python",
        "--out",
        str(repository),
        "--model-name",
        MODEL_NAME,
        "--version",
        str(MODEL_VERSION),
        "--max-batch-size",
        "32",
        "--intra-op-threads",
        "1",  # one thread per instance measured cheapest per post (docs/performance.md)
        # No --python-env: export defaults to this environment (numpy<2, onnxruntime) for Triton's
        # python backend, as it does for any user.
    ]


def export_fingerprint(checkpoint: Path) -> str:
    stamp = read_stamp(checkpoint / STAMP_FILE) or {}
    weights = (checkpoint / "checkpoint.pt").stat()
    argv = export_argv(Path("CHECKPOINT"), Path("REPOSITORY"))[3:]
    parts = [str(stamp.get("fingerprint")), str(weights.st_size), str(weights.st_mtime_ns), *argv]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def export_or_reuse(console: Console, paths: DemoPaths, retrain: bool) -> Path:
    fingerprint = export_fingerprint(paths.checkpoint)
    manifest = paths.model_repository / MODEL_NAME / str(MODEL_VERSION) / "manifest.json"
    stamp = read_stamp(paths.repository_stamp)
    if not retrain and manifest.is_file() and stamp is not None and stamp.get("fingerprint") == fingerprint:
        console.print(f"reusing {paths.model_repository}: exported from this checkpoint")
        return paths.model_repository
    shutil.rmtree(paths.model_repository, ignore_errors=True)
    paths.repository_stamp.unlink(missing_ok=True)
    run_child(export_argv(paths.checkpoint, paths.model_repository), "export")
    paths.repository_stamp.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    return paths.model_repository
