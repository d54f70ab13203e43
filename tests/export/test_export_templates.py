"""model_repo/templates/ shows what export writes: regenerated and compared, and valid for Triton."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from training.export.targets import Target
from training.export.templates import TEMPLATES, render


def test_templates_are_current_and_parse_as_triton_configs() -> None:
    for target in Target:
        path = TEMPLATES / f"{target.value}.config.pbtxt"
        assert path.read_text() == render(target), f"{path} is stale: python -m training.export.templates"
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert (config.platform or config.backend) in {"tensorrt_plan", "onnxruntime_onnx", "python"}
        assert config.max_batch_size == 64 and config.model_warmup


def test_no_weights_are_committed_under_model_repo() -> None:
    root = Path(__file__).resolve().parents[2] / "model_repo"
    weights = [p for p in root.rglob("*") if p.suffix in {".onnx", ".plan", ".pt", ".safetensors", ".bin"}]
    assert weights == []
