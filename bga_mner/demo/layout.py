"""Where the demo keeps things and what it calls them: paths, names and the reuse stamps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bga_mner.errors import BgaMnerError

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
SAMPLE_TRAIN = DEMO_DATA / "sample_train.txt"
SAMPLE_POSTS = DEMO_DATA / "sample_posts.jsonl"
CONFIG_DIR = DEMO_DATA / "configs"  # package data: the demo runs from an installed package too
MODEL_NAME = "bga_mner"
MODEL_VERSION = 1
TOPIC = "demo.posts"
DLQ_TOPIC = "demo.posts.dlq"
GROUP = "bga-mner-demo"
KEY_PREFIX = "bga"
STAMP_FILE = "demo-stamp.json"


class DemoError(BgaMnerError):
    """A step failed; the message says which and where its log is."""


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def model_repository(self) -> Path:
        return self.root / "model_repository"

    @property
    def repository_stamp(self) -> Path:
        # Beside the repository, not in it: Triton serves every directory of the repository root.
        return self.root / "model_repository.stamp.json"

    @property
    def sample_data(self) -> Path:
        return self.root / "sample_data"

    @property
    def stack(self) -> Path:
        return self.root / "stack"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None
