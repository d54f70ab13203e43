"""ONNX export of the text-only inference graph.

The graph is the contract's: ``input_ids``, ``attention_mask``, ``casing_ids`` (int64, [batch, seq]) in,
``emissions`` (float32, [batch, seq, labels]) out, with batch and sequence dynamic so that one file serves
every window length the worker's length bucketing produces. The legacy TorchScript exporter
(``dynamo=False``) is used on purpose: the dynamo exporter needs ``onnxscript`` and is not what the rest of
the toolchain (TensorRT's parser, ``quantize_dynamic``) has been exercised with here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import onnx
import torch
from torch.jit._trace import TracerWarning

from training.export.targets import INPUT_NAMES, OUTPUT_NAME

MIN_OPSET = 17


class _Emissions(torch.nn.Module):
    """Pins the positional order of the inputs and the single output, whatever the wrapped model returns."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, casing_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(input_ids, attention_mask, casing_ids)
        if isinstance(out, tuple | list):
            out = out[0]
        return cast(torch.Tensor, out).float()


def example_inputs(batch: int = 2, seq: int = 16, vocab_limit: int = 100) -> tuple[torch.Tensor, ...]:
    """Inputs for tracing: uneven padding so the mask is really used and not constant-folded."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab_limit, (batch, seq), generator=generator, dtype=torch.int64)
    attention_mask = torch.ones(batch, seq, dtype=torch.int64)
    attention_mask[-1, seq // 2 :] = 0
    input_ids[-1, seq // 2 :] = 0
    casing_ids = torch.randint(1, 3, (batch, seq), generator=generator, dtype=torch.int64)
    casing_ids[-1, seq // 2 :] = 0
    return input_ids, attention_mask, casing_ids


def export_onnx(model: torch.nn.Module, path: Path, *, opset: int = MIN_OPSET) -> Path:
    """Write ``model`` as ONNX to ``path`` and check it; returns ``path``."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}: the model repository requires opset >= {MIN_OPSET}")
    wrapper = _Emissions(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch", 1: "sequence"}
    # The tracer's warnings (Python control flow on shapes, advanced indexing) are about exactly what
    # the parity check verifies on real posts of other shapes; printed here they only alarm users.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*", category=UserWarning)
        torch.onnx.export(
            wrapper,
            example_inputs(),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: dynamic for name in INPUT_NAMES}, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
        )
    _restore_unused_inputs(path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _restore_unused_inputs(path: Path) -> None:
    """Put back contract inputs the exporter pruned because the model ignores them (e.g. a model without
    casing features): every target must accept exactly the same three inputs, or the worker's start-up
    check against Triton's metadata would fail on one target and not another."""
    model = onnx.load(str(path))
    present = {value.name for value in model.graph.input}
    missing = [name for name in INPUT_NAMES if name not in present]
    if not missing:
        return
    for name in missing:
        model.graph.input.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "sequence"])
        )
    order = {name: i for i, name in enumerate(INPUT_NAMES)}
    inputs = sorted(model.graph.input, key=lambda value: order.get(value.name, len(order)))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.save(model, str(path))


def onnx_signature(path: Path) -> dict[str, list[str | int]]:
    """Input/output names -> dims (symbolic names as str) as the file declares them; used by tests and
    by the repository writer's consistency check."""
    graph = onnx.load(str(path), load_external_data=False).graph
    signature: dict[str, list[str | int]] = {}
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        signature[value.name] = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    return signature
