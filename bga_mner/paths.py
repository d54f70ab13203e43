"""Where the project finds things it does not own: the benchmark data.

The data is never committed; a user brings a copy and points ``BGA_DATA_DIR`` at it.
In this workspace it defaults to ``../shared/data`` next to the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

# The checkout when the package runs from one (in site-packages, the directory above it: harmless).
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The data directory, or None when neither ``BGA_DATA_DIR`` nor ``../shared/data`` exists."""
    configured = os.environ.get("BGA_DATA_DIR")
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_dir() else None
    for candidate in (_SOURCE_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None
