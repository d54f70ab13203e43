"""The TensorRT serving path without a GPU: what export writes for it and the plan-vs-ONNX check.

No TensorRT exists here, so the check (deploy/tensorrt/plan_parity.py) is run with a stand-in for
Polygraphy's runner that executes the exported ONNX graph: parity must hold for the same graph and
fail for a graph that answers differently.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bga_mner.inference.onnx_local import OnnxBackend
from tests.export.conftest import export
from training.export.tensorrt_build import sequence_buckets

ROOT = Path(__file__).resolve().parents[2]


def _load_plan_parity() -> Any:
    spec = importlib.util.spec_from_file_location(
        "plan_parity", ROOT / "deploy" / "tensorrt" / "plan_parity.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tensorrt_repository(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tensorrt_repository")
    return export(tiny_checkpoint, out, "tensorrt", "--skip-plan", "--max-batch-size", "8")


def _fake_polygraphy(onnx_path: Path, shift: float) -> dict[str, types.ModuleType]:
    """``polygraphy.backend.trt`` whose runner runs ``onnx_path`` with ONNX Runtime (+ ``shift``)."""
    backend = OnnxBackend(onnx_path, threads=1)

    class Runner:
        def __init__(self, engine: object) -> None:
            del engine

        def __enter__(self) -> Runner:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
            emissions = backend.infer(feed)
            emissions[..., 1] += shift
            return {"emissions": emissions}

    trt = types.ModuleType("polygraphy.backend.trt")
    trt.EngineFromBytes = lambda data: data  # type: ignore[attr-defined]
    trt.TrtRunner = Runner  # type: ignore[attr-defined]
    return {
        "polygraphy": types.ModuleType("polygraphy"),
        "polygraphy.backend": types.ModuleType("polygraphy.backend"),
        "polygraphy.backend.trt": trt,
    }


@pytest.fixture
def version_dir(tensorrt_repository: Path) -> Iterator[Path]:
    directory = tensorrt_repository / "bga_mner" / "1"
    plan = directory / "model.plan"
    plan.write_bytes(b"stand-in engine")
    yield directory
    plan.unlink()


@pytest.mark.parametrize(("shift", "expected"), [(0.0, 0), (3.0, 1)])
def test_plan_parity_passes_for_the_same_graph_and_fails_for_another(
    version_dir: Path, monkeypatch: pytest.MonkeyPatch, shift: float, expected: int
) -> None:
    for name, module in _fake_polygraphy(version_dir / "model.onnx", shift).items():
        monkeypatch.setitem(sys.modules, name, module)
    assert _load_plan_parity().main([str(version_dir)]) == expected


def test_plan_parity_cannot_run_without_its_data(version_dir: Path, tmp_path: Path) -> None:
    for name in ("manifest.json", "model.plan", "model.onnx"):
        (tmp_path / name).write_bytes((version_dir / name).read_bytes())
    assert _load_plan_parity().main([str(tmp_path)]) == 2


def test_parity_requests_are_bucketed_and_warmups_are_real_text(tensorrt_repository: Path) -> None:
    model_dir = tensorrt_repository / "bga_mner"
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    buckets = list(sequence_buckets(manifest["max_length"]))
    assert manifest["sequence_buckets"] == buckets
    data = np.load(model_dir / "1" / "plan_parity.npz", allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    assert meta["requests"] > 1
    for request in range(meta["requests"]):
        assert data[f"input_ids_{request}"].shape[1] in buckets
        assert data[f"input_ids_{request}"].shape[0] <= 8
    config = (model_dir / "config.pbtxt").read_text()
    assert "zero_data" not in config
    for length in buckets:
        mask = np.frombuffer(
            (model_dir / "warmup" / f"bga_mner_warmup_{length}_attention_mask").read_bytes(), np.int64
        )
        ids = np.frombuffer(
            (model_dir / "warmup" / f"bga_mner_warmup_{length}_input_ids").read_bytes(), np.int64
        )
        casing = np.frombuffer(
            (model_dir / "warmup" / f"bga_mner_warmup_{length}_casing_ids").read_bytes(), np.int64
        )
        assert len(mask) == len(ids) == len(casing) == length
        assert mask.all(), "a warm-up window is real text end to end, never a fully masked row"
        assert casing[1:-1].any() and len(set(ids.tolist())) > length // 2
        assert f'input_data_file: "bga_mner_warmup_{length}_input_ids"' in config


def test_sequence_buckets() -> None:
    assert sequence_buckets(128) == (8, 16, 32, 64, 128)
    assert sequence_buckets(100) == (8, 16, 32, 64, 100)
    assert sequence_buckets(8) == (8,)


def test_build_plan_warns_for_an_export_without_parity_data(
    tensorrt_repository: Path, tmp_path: Path
) -> None:
    """Exports made before the check carry no reference: the plan is built, with a warning."""
    import os
    import shutil
    import subprocess

    copy = tmp_path / "repository"
    shutil.copytree(tensorrt_repository, copy)
    (copy / "bga_mner" / "1" / "plan_parity.npz").unlink()
    fake = tmp_path / "trtexec"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'for a in "$@"; do case "$a" in --saveEngine=*) : > "${a#--saveEngine=}";; esac; done\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "tensorrt" / "build_plan.sh"), str(copy)],
        env={**os.environ, "TRTEXEC": str(fake)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "NOT compared" in result.stderr
    assert (copy / "bga_mner" / "1" / "model.plan").exists()


def test_the_plan_checks_own_decoder_matches_the_serving_decoder() -> None:
    """plan_parity.py runs in the TensorRT container without the project, so it carries its own
    Viterbi; it must give the serving decoder's paths."""
    from bga_mner.decoding import CRFParams, viterbi

    plan_parity = _load_plan_parity()
    rng = np.random.default_rng(1)
    for length in (0, 1, 2, 9, 40):
        emissions = rng.normal(size=(length, 9)).astype(np.float32)
        start, end, transitions = rng.normal(size=9), rng.normal(size=9), rng.normal(size=(9, 9))
        expected, _ = viterbi(emissions, CRFParams(start=start, end=end, transitions=transitions))
        assert plan_parity.viterbi(emissions, start, transitions, end) == list(expected)
