"""The worker never imports torch: not its modules, not their dependencies, not the CLI that starts it.

The worker image installs `bga-mner[worker]` without torch, so any import of it would crash there.
Every module of the `worker` package is imported in a fresh interpreter whose import system
refuses torch and records each attempt (a library's optional ``try: import torch`` counts too).
The live worker process is checked the same way in tests/integration/test_worker_sigterm.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, importlib.abc, pkgutil, sys
attempts = []
class RefuseTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            attempts.append(name)
            raise ImportError(name)
        return None
sys.meta_path.insert(0, RefuseTorch())
import worker
modules = sorted(m.name for m in pkgutil.walk_packages(worker.__path__, "worker."))
for name in modules:
    importlib.import_module(name)
from bga_mner.cli import build_parser
build_parser()  # imports every command module, as `bga-mner worker` does
print("IMPORTED", len(modules))
print("ATTEMPTS", ",".join(attempts))
print("LOADED", ",".join(sorted(m for m in sys.modules if m.split(".")[0] == "torch")))
"""


def test_no_worker_module_imports_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {key: value for key, _, value in (line.partition(" ") for line in result.stdout.splitlines())}
    assert int(lines["IMPORTED"]) >= 15  # the whole package, not an empty walk
    assert lines["ATTEMPTS"] == "", f"tried to import torch: {lines['ATTEMPTS']}"
    assert lines["LOADED"] == ""
