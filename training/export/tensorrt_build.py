"""Build a TensorRT engine (``model.plan``) from the exported ONNX graph with the TensorRT Python API.

A plan is tied to the GPU architecture and the TensorRT version that built it, so production builds it
inside the same Triton/TensorRT release that serves it (``deploy/tensorrt/build_plan.sh`` and its Job);
this module is the in-process path for ``bga-mner export --target tensorrt`` on a GPU machine. It does
not import torch: the GPU check goes through the CUDA driver API directly, so it works in the slim
TensorRT container too. Missing prerequisites raise :class:`TensorRTUnavailable` with a message meant
for the person at the terminal, never a traceback.
"""

from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bga_mner.errors import ConfigurationError
from training.export.targets import INPUT_NAMES

MIN_SEQUENCE = 8
# Written next to model.onnx for the tensorrt target: the layers to keep in fp32 in an FP16 plan.
FP32_LAYERS_FILE = "fp32_layers.txt"
# Float compute ops; shape, index and boolean ops carry no precision to pin.
_FLOAT_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "ReduceMax", "ReduceSum", "ReduceMean", "Exp", "Log",
    "Sqrt", "Pow", "LayerNormalization", "Greater", "Less", "Equal", "Ceil", "Cast",
}  # fmt: skip
_COMPARISONS = {"Greater", "Less", "Equal"}


def fp32_layer_names(onnx_path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the float compute nodes under ``prefixes`` (the sampler's scorers and rank selection of
    the lean graph): about a sixth of rows have a gap under one fp16 step between the last kept and the
    first dropped token, so fp16 there could change which tokens the sampler keeps."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.name.startswith(prefixes) and n.op_type in _FLOAT_OPS]


def write_fp32_layers(onnx_path: Path, target: Path, prefixes: tuple[str, ...]) -> list[str]:
    """``fp32_layers.txt``: one ONNX node name per line, what deploy/tensorrt/build_plan.sh pins."""
    names = fp32_layer_names(onnx_path, prefixes)
    target.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    return names


def sequence_buckets(max_length: int, min_length: int = MIN_SEQUENCE) -> tuple[int, ...]:
    """Sequence lengths a TensorRT model is sent at: powers of two from ``min_length``, then ``max_length``.

    TensorRT in Triton has no ragged batching, so the dynamic batcher only merges requests of the same
    shape; a worker that pads every sub-batch up to the next bucket (8/16/32/64/128) lets requests merge
    at the cost of at most 2x padding on the sequence axis. The export records them in the manifest's
    card (``sequence_buckets``) and warms the engine up at each.
    """
    buckets, length = [], max(1, min_length)
    while length < max_length:
        buckets.append(length)
        length *= 2
    buckets.append(max_length)
    return tuple(buckets)


class TensorRTUnavailable(ConfigurationError):
    """No CUDA GPU, or no TensorRT Python package, on this machine."""


@dataclass(frozen=True)
class PlanProfile:
    """The one optimisation profile: batch 1..max x sequence min..max, optimised for the typical shape."""

    max_batch_size: int
    max_length: int
    min_length: int = MIN_SEQUENCE
    opt_batch_size: int | None = None
    opt_length: int | None = None

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"sequence range {self.min_length}..{self.max_length} is empty")
        opt_batch = self.opt_batch_size or max(1, self.max_batch_size // 2)
        # Tweets average ~16 words (~30 subwords): optimise for short windows, not the worst case.
        opt_len = self.opt_length or min(self.max_length, max(self.min_length, 64))
        return (1, self.min_length), (opt_batch, opt_len), (self.max_batch_size, self.max_length)


def cuda_device_count() -> int:
    """Number of CUDA devices the driver sees; 0 when there is no driver or no device."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def load_tensorrt() -> Any:
    """Import ``tensorrt`` after checking for a GPU, or raise :class:`TensorRTUnavailable` saying why."""
    if cuda_device_count() == 0:
        raise TensorRTUnavailable(
            "no CUDA GPU found: a TensorRT plan can only be built on the GPU type that will serve it. "
            "Export with --target onnxruntime or --target python for CPU, or use --skip-plan here and build "
            "the plan in the serving Triton/TensorRT container with deploy/tensorrt/build_plan.sh "
            "(Kubernetes: the model-publish Job of deploy/k8s/overlays/production)."
        )
    try:
        return importlib.import_module("tensorrt")
    except ImportError as error:
        raise TensorRTUnavailable(
            f"the TensorRT Python package is not installed ({error}). Build inside the Triton/TensorRT "
            "container that matches your Triton release (deploy/tensorrt/build_plan.sh), or "
            "`pip install tensorrt` matching the TensorRT version of your Triton server."
        ) from None


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    profile: PlanProfile,
    *,
    fp16: bool = True,
    workspace_gib: float = 4.0,
    fp32_layers: tuple[str, ...] | list[str] = (),
) -> Path:
    """Parse ``onnx_path``, build an engine with ``profile`` (FP16 unless disabled, ``fp32_layers``
    preferred in fp32), write ``plan_path``."""
    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise TensorRTUnavailable("this GPU has no fast FP16; rebuild with fp16 disabled")
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = set(fp32_layers)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.name in pinned:
                layer.precision = trt.float32
        if pinned:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    minimum, optimum, maximum = profile.shapes()
    optimisation = builder.create_optimization_profile()
    for name in INPUT_NAMES:
        optimisation.set_shape(name, minimum, optimum, maximum)
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return plan_path
