"""int8 dynamic quantisation of the exported ONNX graph, for CPU serving.

Dynamic quantisation (weights int8 ahead of time, activations quantised per batch at run time) needs no
calibration set and keeps the graph's inputs and outputs unchanged, so the int8 file is a drop-in
replacement for ``model.onnx`` in the ``onnxruntime`` and ``python`` targets. Only MatMul/Gemm are
quantised: they carry almost all the encoder's cost, and quantising the embedding gathers or the small
emission head costs accuracy for no speed.

Weights are quantised per output channel: with one scale per tensor, the lean graph of a Twitter-2017
checkpoint lost 0.79 dev F1 (81.48 -> 80.69) and 1.17 test F1; per channel it lost 0.13 dev and gained
0.08 test, at the same speed (docs/performance.md; `benchmarks/serving_graphs.py --variants lean-fp32
lean-int8 lean-int8-tensor`).

The feed-forward output projection of each encoder layer (the MatMul after GELU) is the usual weak
spot of int8 transformers: its input is known to carry a few very large activations, so one dynamic
scale per batch leaves the ordinary values few int8 steps. Keeping just those MatMuls in fp32
(`keep_fp32=ffn_output_matmuls(...)`) took the release recipe's 6-layer model from -0.54 dev F1
against fp32 to +0.03, at 65 % of fp32's CPU (docs/performance.md, "The served models").
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

QUANTIZED_OPS = ["MatMul", "Gemm"]
# The feed-forward output projection of encoder layer N: `/layers.N/output/MatMul` in the lean graph,
# `/layer.N/output/dense/MatMul` in Hugging Face's (the attention's `.../attention/output/...` is not).
_FFN_OUTPUT = re.compile(r"/layers?\.\d+/output/(dense/)?MatMul$")


def ffn_output_matmuls(model: Path) -> list[str]:
    """Names of the encoder layers' feed-forward output MatMuls in the ONNX graph at ``model``."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "MatMul" and _FFN_OUTPUT.search(node.name)]


def quantize_int8(
    source: Path, target: Path, *, per_channel: bool = True, keep_fp32: Sequence[str] = ()
) -> Path:
    """Write an int8 dynamically quantised copy of ``source`` to ``target``; returns ``target``.
    ``keep_fp32`` names nodes left in fp32. ``per_channel=False`` (one scale per weight tensor) is kept
    for comparisons only."""
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
            per_channel=per_channel,
            reduce_range=False,
            nodes_to_exclude=list(keep_fp32),
        )
    onnx.checker.check_model(str(target))
    return target
