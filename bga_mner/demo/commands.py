"""`bga-mner` subcommands as child processes on this terminal, so their own progress shows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from bga_mner.demo.layout import DemoError


def child_environment() -> dict[str, str]:
    """No model hub is reachable: everything loads from the installed offline packages."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_child(argv: Sequence[str], what: str) -> None:
    """A subprocess on this terminal (its progress bars show); Ctrl-C reaches it as well."""
    code = subprocess.run(list(argv), env=child_environment(), check=False).returncode
    if code != 0:
        raise DemoError(f"{what} failed with exit code {code}: {' '.join(argv)}")
