"""A typed Triton model configuration rendered to ``config.pbtxt`` (protobuf text format).

Hand-written configs drift from the model; export builds this object from the manifest instead
(:func:`config_for_manifest`), so the names, dtypes and dims Triton serves are the manifest's.
Rendering is done here rather than through Triton's protobuf classes so that the core needs no
tritonclient; the tests parse the output back with ``tritonclient``'s ``model_config_pb2`` to
prove it is valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from bga_mner.model_repository.manifest import Manifest, TensorSpec

__all__ = [
    "DataType",
    "DynamicBatching",
    "InstanceGroup",
    "ModelWarmup",
    "TensorConfig",
    "TritonModelConfig",
    "VersionPolicy",
    "WarmupInput",
    "config_for_manifest",
    "model_file_for_target",
]

DataType = Literal[
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_BF16",
    "TYPE_STRING",
]


@dataclass(frozen=True)
class TensorConfig:
    """An input or output; ``dims`` exclude the batch dimension when ``max_batch_size > 0``."""

    name: str
    data_type: DataType
    dims: Sequence[int]
    # Lets Triton's dynamic batcher group requests of different sequence lengths. Only for the
    # python backend, whose model.py pads them itself; the native ONNX Runtime and TensorRT
    # backends would receive the requests flattened instead.
    allow_ragged_batch: bool = False

    @classmethod
    def from_spec(cls, spec: TensorSpec, *, allow_ragged_batch: bool = False) -> TensorConfig:
        data_type = cast(DataType, "TYPE_STRING" if spec.dtype == "BYTES" else f"TYPE_{spec.dtype}")
        return cls(spec.name, data_type, list(spec.dims), allow_ragged_batch)


@dataclass(frozen=True)
class DynamicBatching:
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: Sequence[int] = ()


@dataclass(frozen=True)
class InstanceGroup:
    kind: Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"] = "KIND_GPU"
    count: int = 1
    gpus: Sequence[int] = ()


@dataclass(frozen=True)
class VersionPolicy:
    """``latest`` (keep the ``num_versions`` highest), ``all``, or ``specific`` ``versions``."""

    policy: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: Sequence[int] = ()


@dataclass(frozen=True)
class WarmupInput:
    """One warm-up input: generated (``fill``) or, when ``data_file`` is set, read from that file
    under the model directory's ``warmup/`` folder (Triton's ``input_data_file``)."""

    data_type: DataType
    dims: Sequence[int]
    fill: Literal["zero_data", "random_data"] = "zero_data"
    data_file: str | None = None


@dataclass(frozen=True)
class ModelWarmup:
    name: str
    batch_size: int
    inputs: Mapping[str, WarmupInput]


@dataclass(frozen=True)
class TritonModelConfig:
    """The subset of Triton's ``ModelConfig`` protobuf this project uses; give ``platform`` or ``backend``."""

    name: str
    max_batch_size: int
    inputs: Sequence[TensorConfig]
    outputs: Sequence[TensorConfig]
    platform: str | None = None
    backend: str | None = None
    version_policy: VersionPolicy | None = None
    dynamic_batching: DynamicBatching | None = None
    instance_group: Sequence[InstanceGroup] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)
    model_warmup: Sequence[ModelWarmup] = ()
    default_model_filename: str | None = None

    def __post_init__(self) -> None:
        if (self.platform is None) == (self.backend is None):
            raise ValueError("a Triton model config needs exactly one of platform or backend")
        if self.max_batch_size < 0:
            raise ValueError(f"max_batch_size must be >= 0, got {self.max_batch_size}")

    def render(self) -> str:
        """The ``config.pbtxt`` text, deterministic (same config -> same bytes)."""
        lines = [f"name: {_quote(self.name)}"]
        if self.platform is not None:
            lines.append(f"platform: {_quote(self.platform)}")
        if self.backend is not None:
            lines.append(f"backend: {_quote(self.backend)}")
        if self.version_policy is not None:
            lines += _version_policy(self.version_policy)
        lines.append(f"max_batch_size: {self.max_batch_size}")
        lines += _tensors("input", self.inputs)
        lines += _tensors("output", self.outputs)
        if self.dynamic_batching is not None:
            lines.append("dynamic_batching {")
            if self.dynamic_batching.preferred_batch_size:
                lines.append(f"  preferred_batch_size: {_list(self.dynamic_batching.preferred_batch_size)}")
            lines.append(
                f"  max_queue_delay_microseconds: {self.dynamic_batching.max_queue_delay_microseconds}"
            )
            lines.append("}")
        if self.instance_group:
            lines.append("instance_group [")
            for i, group in enumerate(self.instance_group):
                lines += ["  {", f"    count: {group.count}", f"    kind: {group.kind}"]
                if group.gpus:
                    lines.append(f"    gpus: {_list(group.gpus)}")
                lines.append("  }," if i < len(self.instance_group) - 1 else "  }")
            lines.append("]")
        if self.default_model_filename is not None:
            lines.append(f"default_model_filename: {_quote(self.default_model_filename)}")
        for key, value in self.parameters.items():
            lines += [
                "parameters {",
                f"  key: {_quote(key)}",
                "  value {",
                f"    string_value: {_quote(value)}",
                "  }",
                "}",
            ]
        if self.model_warmup:
            lines.append("model_warmup [")
            for i, warmup in enumerate(self.model_warmup):
                lines += ["  {", f"    name: {_quote(warmup.name)}", f"    batch_size: {warmup.batch_size}"]
                for input_name, sample in warmup.inputs.items():
                    lines += [
                        "    inputs {",
                        f"      key: {_quote(input_name)}",
                        "      value {",
                        f"        data_type: {sample.data_type}",
                        f"        dims: {_list(sample.dims)}",
                        f"        input_data_file: {_quote(sample.data_file)}"
                        if sample.data_file is not None
                        else f"        {sample.fill}: true",
                        "      }",
                        "    }",
                    ]
                lines.append("  }," if i < len(self.model_warmup) - 1 else "  }")
            lines.append("]")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept, C escapes for the rest)."""
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif ch == "\n":
            escaped.append("\\n")
        elif ch == "\t":
            escaped.append("\\t")
        elif ch == "\r":
            escaped.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\{ord(ch):03o}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def _list(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensors(kind: str, tensors: Sequence[TensorConfig]) -> list[str]:
    if not tensors:
        return []
    lines = [f"{kind} ["]
    for i, tensor in enumerate(tensors):
        lines += [
            "  {",
            f"    name: {_quote(tensor.name)}",
            f"    data_type: {tensor.data_type}",
            f"    dims: {_list(tensor.dims)}",
            *(["    allow_ragged_batch: true"] if tensor.allow_ragged_batch else []),
            "  }," if i < len(tensors) - 1 else "  }",
        ]
    lines.append("]")
    return lines


def _version_policy(policy: VersionPolicy) -> list[str]:
    if policy.policy == "latest":
        return [f"version_policy: {{ latest: {{ num_versions: {policy.num_versions} }} }}"]
    if policy.policy == "all":
        return ["version_policy: { all: { } }"]
    return [f"version_policy: {{ specific: {{ versions: {_list(policy.versions)} }} }}"]


_PLATFORMS: dict[str, tuple[str | None, str | None, str]] = {
    # target -> (platform, backend, model file)
    "tensorrt": ("tensorrt_plan", None, "model.plan"),
    "onnxruntime": ("onnxruntime_onnx", None, "model.onnx"),
    "python": (None, "python", "model.py"),
}


def model_file_for_target(target: str) -> str:
    """The file Triton loads from the version directory for a manifest ``target``."""
    return _PLATFORMS[target][2]


def config_for_manifest(
    manifest: Manifest,
    *,
    max_batch_size: int = 64,
    kind: Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"] = "KIND_GPU",
    count: int = 1,
    preferred_batch_size: Sequence[int] = (8, 16, 32),
    max_queue_delay_microseconds: int = 2000,
    parameters: Mapping[str, str] | None = None,
    warmup_length: int | None = 32,
) -> TritonModelConfig:
    """The Triton config of an exported BGA-MNER model, its tensors taken from the manifest.

    ``warmup_length`` adds a warm-up request of that many subwords at the largest preferred batch
    size (TensorRT builds its kernels on first use; without warm-up the first posts are slow).
    """
    if max_batch_size < 1:
        raise ValueError(
            f"BGA-MNER inputs are batch-first: max_batch_size must be >= 1, got {max_batch_size}"
        )
    platform, backend, _ = _PLATFORMS[manifest.target]
    preferred = [size for size in preferred_batch_size if 0 < size <= max_batch_size]
    # Measured on the CPU Triton: without ragged batching the python backend executed 6 requests of
    # different lengths as 6 batches; with it, one.
    ragged = manifest.target == "python"
    inputs = [TensorConfig.from_spec(spec, allow_ragged_batch=ragged) for spec in manifest.inputs]
    warmups: list[ModelWarmup] = []
    if warmup_length is not None:
        batch = max(preferred, default=max(max_batch_size, 1))
        samples = {
            tensor.name: WarmupInput(tensor.data_type, [warmup_length if d == -1 else d for d in tensor.dims])
            for tensor in inputs
        }
        warmups.append(ModelWarmup(f"{manifest.model_name}_warmup_{warmup_length}", batch, samples))
    return TritonModelConfig(
        name=manifest.model_name,
        platform=platform,
        backend=backend,
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=[TensorConfig.from_spec(spec) for spec in manifest.outputs],
        version_policy=VersionPolicy("latest", 1),
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds, preferred),
        instance_group=[InstanceGroup(kind, count)],
        parameters=dict(parameters or {}),
        model_warmup=warmups,
    )
