"""deploy/tensorrt/build_plan.sh, run for real with a recording stand-in for trtexec.

TensorRT itself needs a GPU; what can go wrong without one is the script's part: finding the
version, deriving the optimisation profile from the repository, and never leaving a half-written plan.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY

SCRIPT = DEPLOY / "tensorrt" / "build_plan.sh"
FAKE_TRTEXEC = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$(dirname "$0")/trtexec.args"
for arg in "$@"; do case "$arg" in --saveEngine=*) echo plan > "${arg#--saveEngine=}";; esac; done
"""


def _repository(root: Path, platform: str = "tensorrt_plan", versions: tuple[int, ...] = (1, 3)) -> Path:
    model = root / "repo" / "bga_mner"
    model.mkdir(parents=True)
    (model / "config.pbtxt").write_text(f'name: "bga_mner"\nplatform: "{platform}"\nmax_batch_size: 16\n')
    for version in versions:
        (model / str(version)).mkdir()
        (model / str(version) / "model.onnx").write_bytes(b"onnx")
        (model / str(version) / "manifest.json").write_text(json.dumps({"max_length": 128}))
    return root / "repo"


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "TRTEXEC": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_builds_the_latest_version_with_the_profile_from_the_repository(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    result = _run(tmp_path, str(repo))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "trtexec.args").read_text().splitlines()
    version_dir = repo / "bga_mner" / "3"
    assert f"--onnx={version_dir / 'model.onnx'}" in args
    assert "--fp16" in args
    assert "--minShapes=input_ids:1x8,attention_mask:1x8,casing_ids:1x8" in args
    assert "--optShapes=input_ids:8x64,attention_mask:8x64,casing_ids:8x64" in args
    assert "--maxShapes=input_ids:16x128,attention_mask:16x128,casing_ids:16x128" in args
    assert (version_dir / "model.plan").read_text() == "plan\n"
    assert not (version_dir / "model.plan.tmp").exists()
    assert not (repo / "bga_mner" / "1" / "model.plan").exists()


def test_existing_plan_is_kept_unless_forced(tmp_path: Path) -> None:
    repo = _repository(tmp_path, versions=(1,))
    plan = repo / "bga_mner" / "1" / "model.plan"
    plan.write_text("old")
    assert _run(tmp_path, str(repo), "bga_mner", "1").returncode == 0
    assert plan.read_text() == "old"
    assert _run(tmp_path, str(repo), "bga_mner", "1", FORCE="1").returncode == 0
    assert plan.read_text() == "plan\n"


@pytest.mark.parametrize("problem", ["not-tensorrt", "no-onnx"])
def test_refuses_a_repository_it_cannot_build(tmp_path: Path, problem: str) -> None:
    repo = _repository(
        tmp_path, platform="onnxruntime_onnx" if problem == "not-tensorrt" else "tensorrt_plan"
    )
    if problem == "no-onnx":
        (repo / "bga_mner" / "3" / "model.onnx").unlink()
    result = _run(tmp_path, str(repo))
    assert result.returncode == 2
    assert "build_plan:" in result.stderr
    assert not (tmp_path / "trtexec.args").exists()
