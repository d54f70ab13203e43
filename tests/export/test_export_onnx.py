"""The ONNX graph: the contract's signature, dynamic axes, opset, and no input pruned away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.export.onnx_export import MIN_OPSET, example_inputs, export_onnx, onnx_signature
from training.export.targets import INPUT_NAMES


class _IgnoresCasing(torch.nn.Module):
    """A model that does not use casing_ids: the exporter would drop that input."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(100, 8)
        self.head = torch.nn.Linear(8, 5)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        del casing_ids
        emissions: torch.Tensor = self.head(self.embedding(input_ids))
        return emissions * attention_mask.unsqueeze(-1)


def test_signature_is_the_contract_even_when_an_input_is_unused(tmp_path: Path) -> None:
    path = export_onnx(_IgnoresCasing().eval(), tmp_path / "model.onnx")
    signature = onnx_signature(path)
    assert list(signature) == [*INPUT_NAMES, "emissions"]
    for name in INPUT_NAMES:
        assert signature[name] == ["batch", "sequence"]
    assert signature["emissions"] == ["batch", "sequence", 5]
    model = onnx.load(str(path))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUT_NAMES)


def test_old_opsets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_IgnoresCasing().eval(), tmp_path / "model.onnx", opset=13)


@pytest.mark.slow
def test_bga_mner_graph_matches_pytorch_at_shapes_it_was_not_traced_with(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Tracing can bake the example's batch or sequence length into the graph (e.g. in the sampler's
    top-k sizes); shapes other than the trace's (2 x 16) must give the same emissions as PyTorch."""
    from training.checkpoint import load_for_inference

    bundle = load_for_inference(tiny_checkpoint)
    path = export_onnx(bundle.module, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, seq in [(1, 3), (1, 24), (5, 8), (3, 41)]:
        inputs = example_inputs(batch, seq)
        with torch.inference_mode():
            expected = bundle.module(*inputs).numpy()
        (actual,) = session.run(
            ["emissions"], dict(zip(INPUT_NAMES, (t.numpy() for t in inputs), strict=True))
        )
        assert actual.shape == (batch, seq, len(bundle.labels))
        assert np.max(np.abs(actual - expected)) <= 1e-4, (batch, seq)


def test_cli_and_tensorrt_builder_import_without_torch() -> None:
    """The TensorRT builder runs in the slim TensorRT container and the CLI's argument parsing must stay
    cheap: neither may import torch (or onnx) at module level."""
    import subprocess
    import sys

    code = (
        "import sys, training.export.command, training.export.tensorrt_build; "
        "print(sorted(m for m in ('torch', 'onnx', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
