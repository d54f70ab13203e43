"""`bga-mner export`: the repository it writes, per target, and how it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bga_mner.cli import main as cli_main
from bga_mner.model_repository import open_repository
from tests.export.conftest import export
from training.export.onnx_export import onnx_signature
from training.export.tensorrt_build import cuda_device_count

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _config(model_dir: Path) -> model_config_pb2.ModelConfig:
    """config.pbtxt parsed by Triton's own protobuf schema: unknown or malformed fields fail here."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_python_target_repository(python_repository: Path, tiny_checkpoint: Path) -> None:
    model_dir = python_repository / "bga_mner"
    version_dir = model_dir / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model.py",
        "tokenizer.json",
    ]
    assert (version_dir / "model.py").read_bytes() == (
        ROOT / "model_repo/python_backend/model.py"
    ).read_bytes()
    assert (version_dir / "tokenizer.json").read_bytes() == (tiny_checkpoint / "tokenizer.json").read_bytes()
    assert (model_dir / "python_env").resolve() == Path(sys.prefix).resolve()
    config = _config(model_dir)
    assert config.backend == "python" and not config.platform
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.version_policy.latest.num_versions == 1
    assert len(config.model_warmup) == 1
    assert config.parameters["EXECUTION_ENV_PATH"].string_value == "$$TRITON_MODEL_DIRECTORY/python_env"
    assert [i.name for i in config.input] == ["input_ids", "attention_mask", "casing_ids"]
    assert [list(o.dims) for o in config.output] == [[-1, 9]]
    # Exactly the inputs/outputs of the ONNX graph model.py runs.
    signature = onnx_signature(version_dir / "model.onnx")
    assert list(signature) == [*(i.name for i in config.input), *(o.name for o in config.output)]

    loaded = open_repository(python_repository, require_model_file=True)
    manifest = loaded.manifest
    assert manifest.target == "python" and manifest.model_version == 1
    assert manifest.labels[0] == "O" and len(manifest.labels) == 9
    assert (manifest.max_length, manifest.stride) == (24, 6)
    card = manifest.card
    assert (card.dev_f1, card.test_f1) == (50.0, 25.0)  # percent, as the trainer writes it
    assert card.training_data_sha256 == "0" * 64
    assert card.export_seconds > 0
    assert card.extra["precision"] == "fp32"
    assert card.extra["parity"]["identical_posts"] == card.extra["parity"]["posts"]


def test_python_target_refuses_an_environment_the_backend_cannot_use(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy

    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    assert (
        cli_main(
            ["export", "--checkpoint", str(tiny_checkpoint), "--target", "python", "--out", str(tmp_path)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "numpy 2.1.0 (the python backend needs numpy<2)" in err and "--python-env DIR" in err
    assert not any(tmp_path.iterdir())


def test_onnxruntime_target_repository(onnxruntime_repository: Path) -> None:
    model_dir = onnxruntime_repository / "bga_mner"
    config = _config(model_dir)
    assert config.platform == "onnxruntime_onnx" and not config.backend
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [
        "manifest.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert not (model_dir / "python_env").exists()
    assert open_repository(onnxruntime_repository, require_model_file=True).manifest.target == "onnxruntime"


def test_versions_are_never_overwritten_silently(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(tiny_checkpoint, tmp_path, "onnxruntime", "--no-parity")
    export(tiny_checkpoint, tmp_path, "onnxruntime", "--no-parity")  # next free version
    assert sorted(p.name for p in (tmp_path / "bga_mner").iterdir() if p.name.isdigit()) == ["1", "2"]
    code = cli_main(
        [
            "export",
            "--checkpoint",
            str(tiny_checkpoint),
            "--target",
            "onnxruntime",
            "--out",
            str(tmp_path),
            "--version",
            "2",
            "--no-parity",
        ]
    )
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")], "staging left behind"
    export(tiny_checkpoint, tmp_path, "onnxruntime", "--version", "2", "--force", "--no-parity")
    assert open_repository(tmp_path, version=2).manifest.model_version == 2


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bga_mner.cli", "export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")},
    )


@pytest.mark.skipif(
    cuda_device_count() > 0, reason="this machine has a GPU: the no-GPU path is not reachable"
)
def test_tensorrt_without_gpu_exits_with_a_message_not_a_traceback(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    result = _run_cli("--checkpoint", str(tiny_checkpoint), "--target", "tensorrt", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bga-mner export: no CUDA GPU found" in result.stderr
    assert "--skip-plan" in result.stderr
    assert not list(tmp_path.iterdir())


def test_tensorrt_skip_plan_writes_what_the_plan_build_job_needs(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    export(tiny_checkpoint, tmp_path, "tensorrt", "--skip-plan", "--max-batch-size", "32", "--no-parity")
    model_dir = tmp_path / "bga_mner"
    config = _config(model_dir)
    assert config.platform == "tensorrt_plan"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.max_batch_size == 32
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [
        "fp32_layers.txt",
        "manifest.json",
        "model.onnx",
        "plan_parity.npz",
        "tokenizer.json",
    ]
    pinned = (model_dir / "1" / "fp32_layers.txt").read_text().split()
    assert pinned and all(name.startswith("/model/scorers.") for name in pinned)
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    assert manifest["target"] == "tensorrt" and manifest["card"]["extra"]["precision"] == "fp16"
    assert "build_plan.sh" in manifest["card"]["extra"]["plan"]
    # deploy/tensorrt/build_plan.sh reads this repository; run it with a stand-in trtexec.
    fake = tmp_path / "trtexec"
    fake.write_text(
        '#!/usr/bin/env bash\nfor a in "$@"; do case "$a" in --saveEngine=*) : > "${a#--saveEngine=}";; '
        'esac; done\necho "$@" > "$(dirname "$0")/args"\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "deploy/tensorrt/build_plan.sh"), str(tmp_path)],
        env={**os.environ, "TRTEXEC": str(fake), "SKIP_PARITY": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "NOT compared" in result.stdout
    trtexec_args = (tmp_path / "args").read_text()
    assert "--maxShapes=input_ids:32x24,attention_mask:32x24,casing_ids:32x24" in trtexec_args
    assert "--precisionConstraints=prefer" in trtexec_args
    assert f"--layerPrecisions={pinned[0]}:fp32," in trtexec_args
    assert (model_dir / "1" / "model.plan").exists()
    # Without TensorRT/Polygraphy here the plan-vs-ONNX check cannot run: the plan must not stay.
    result = subprocess.run(
        ["bash", str(ROOT / "deploy/tensorrt/build_plan.sh"), str(tmp_path)],
        env={**os.environ, "TRTEXEC": str(fake), "FORCE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "parity check failed" in result.stderr
    assert not (model_dir / "1" / "model.plan").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "tensorrt", "--int8"], "--int8 is for the CPU targets"),
        (["--target", "onnxruntime", "--skip-plan"], "--skip-plan only applies"),
        (["--target", "python", "--max-batch-size", "0"], "--max-batch-size must be >= 1"),
    ],
)
def test_invalid_combinations_are_refused(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "out"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["export", "--checkpoint", str(tmp_path), "--target", "onnxruntime", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "no checkpoint.pt" in capsys.readouterr().err


def test_int8_export(tiny_checkpoint: Path, onnxruntime_repository: Path, tmp_path: Path) -> None:
    export(tiny_checkpoint, tmp_path, "onnxruntime", "--int8")
    manifest = open_repository(tmp_path, require_model_file=True).manifest
    assert manifest.card.extra["precision"] == "int8-dynamic"
    int8 = tmp_path / "bga_mner" / "1" / "model.onnx"
    fp32 = onnxruntime_repository / "bga_mner" / "1" / "model.onnx"
    assert onnx_signature(int8) == onnx_signature(fp32)
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops


def _tensorrt_missing() -> str | None:
    if cuda_device_count() == 0:
        return "no CUDA GPU"
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "the TensorRT Python package is not installed"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=str(_tensorrt_missing()))
def test_tensorrt_plan_builds_and_matches_onnx(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """On a GPU with TensorRT: the plan is built, loads, and its FP16 emissions follow the fp32 graph."""
    import importlib

    import numpy as np
    import torch

    from bga_mner.inference.onnx_local import OnnxBackend
    from training.export.onnx_export import example_inputs
    from training.export.targets import INPUT_NAMES

    trt: Any = importlib.import_module("tensorrt")
    export(tiny_checkpoint, tmp_path, "tensorrt", "--max-batch-size", "8")
    version_dir = tmp_path / "bga_mner" / "1"
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        (version_dir / "model.plan").read_bytes()
    )
    context = engine.create_execution_context()
    inputs = example_inputs(batch=4, seq=20)
    device_inputs = [t.cuda().contiguous() for t in inputs]
    for name, tensor in zip(INPUT_NAMES, device_inputs, strict=True):
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    output = torch.empty((4, 20, 9), dtype=torch.float32, device="cuda")
    context.set_tensor_address("emissions", output.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    batch = {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs, strict=True)}
    expected = OnnxBackend(version_dir / "model.onnx").infer(batch)
    got = output.cpu().numpy()
    assert np.max(np.abs(got - expected)) <= 0.05 * max(1.0, float(np.max(np.abs(expected))))
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.99
