"""int8 dynamic quantisation of the exported ONNX graph, for CPU serving.

Dynamic quantisation (weights int8 ahead of time, activations quantised per batch at run time) needs no
calibration set and keeps the graph's inputs and outputs unchanged, so the int8 file is a drop-in
replacement for ``model.onnx`` in the ``onnxruntime`` and ``python`` targets. Only MatMul/Gemm are
quantised: they carry almost all the encoder's cost, and quantising the embedding gathers or the small
emission head costs accuracy for no speed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

QUANTIZED_OPS = ["MatMul", "Gemm"]


def quantize_int8(source: Path, target: Path) -> Path:
    """Write an int8 dynamically quantised copy of ``source`` to ``target``; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # ONNX shape inference + graph clean-up first, as onnxruntime recommends. Its symbolic shape
        # inference is skipped: it gives up on the sampler's data-dependent top-k sizes.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            model_input=str(prepared),
            model_output=str(target),
            op_types_to_quantize=QUANTIZED_OPS,
            weight_type=QuantType.QInt8,
            per_channel=False,
            reduce_range=False,
        )
    onnx.checker.check_model(str(target))
    return target
