from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bga_mner.model_repository import (
    DynamicBatching,
    InstanceGroup,
    Manifest,
    ModelWarmup,
    TensorConfig,
    TritonModelConfig,
    VersionPolicy,
    WarmupInput,
    config_for_manifest,
)

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

MakeManifest = Callable[..., Manifest]

SMALL = TritonModelConfig(
    name="bga_mner",
    backend="python",
    max_batch_size=16,
    inputs=[TensorConfig("input_ids", "TYPE_INT64", [-1])],
    outputs=[TensorConfig("emissions", "TYPE_FP32", [-1, 3])],
    version_policy=VersionPolicy("latest", 2),
    dynamic_batching=DynamicBatching(500, [4, 8]),
    instance_group=[InstanceGroup("KIND_CPU", 2), InstanceGroup("KIND_GPU", 1, [0, 1])],
    parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env"},
    model_warmup=[ModelWarmup("w", 4, {"input_ids": WarmupInput("TYPE_INT64", [8], "random_data")})],
)

SMALL_TEXT = """\
name: "bga_mner"
backend: "python"
version_policy: { latest: { num_versions: 2 } }
max_batch_size: 16
input [
  {
    name: "input_ids"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
]
output [
  {
    name: "emissions"
    data_type: TYPE_FP32
    dims: [ -1, 3 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
}
instance_group [
  {
    count: 2
    kind: KIND_CPU
  },
  {
    count: 1
    kind: KIND_GPU
    gpus: [ 0, 1 ]
  }
]
parameters {
  key: "EXECUTION_ENV_PATH"
  value {
    string_value: "$$TRITON_MODEL_DIRECTORY/env"
  }
}
model_warmup [
  {
    name: "w"
    batch_size: 4
    inputs {
      key: "input_ids"
      value {
        data_type: TYPE_INT64
        dims: [ 8 ]
        random_data: true
      }
    }
  }
]
"""


def parse(text: str) -> Any:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_renders_the_expected_text() -> None:
    assert SMALL.render() == SMALL_TEXT


def test_rendered_text_is_a_valid_triton_model_config() -> None:
    config = parse(SMALL.render())
    assert config.name == "bga_mner" and config.backend == "python" and config.max_batch_size == 16
    assert config.version_policy.latest.num_versions == 2
    [tensor] = config.input
    assert (tensor.name, tensor.data_type, list(tensor.dims)) == (
        "input_ids",
        model_config_pb2.TYPE_INT64,
        [-1],
    )
    [output] = config.output
    assert (output.data_type, list(output.dims)) == (model_config_pb2.TYPE_FP32, [-1, 3])
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    kinds = [(g.kind, g.count, list(g.gpus)) for g in config.instance_group]
    assert kinds == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2, []),
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1, [0, 1]),
    ]
    assert config.parameters["EXECUTION_ENV_PATH"].string_value == "$$TRITON_MODEL_DIRECTORY/env"
    [warmup] = config.model_warmup
    sample = warmup.inputs["input_ids"]
    assert (warmup.name, warmup.batch_size, list(sample.dims), sample.random_data) == ("w", 4, [8], True)


@pytest.mark.parametrize("value", ['a "quoted" \\ path', "tab\there\nnewline", "ünïcødé 😀", "\x01ctrl"])
def test_strings_are_escaped(value: str) -> None:
    config = TritonModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        max_batch_size=1,
        inputs=[],
        outputs=[],
        parameters={"k": value},
    )
    assert parse(config.render()).parameters["k"].string_value == value


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        (VersionPolicy("all"), lambda c: c.version_policy.HasField("all")),
        (
            VersionPolicy("specific", versions=[1, 3]),
            lambda c: list(c.version_policy.specific.versions) == [1, 3],
        ),
    ],
)
def test_version_policies(policy: VersionPolicy, check: Callable[[Any], bool]) -> None:
    config = TritonModelConfig(
        name="m", platform="tensorrt_plan", max_batch_size=1, inputs=[], outputs=[], version_policy=policy
    )
    assert check(parse(config.render()))


@pytest.mark.parametrize(
    ("target", "platform", "backend"),
    [("tensorrt", "tensorrt_plan", ""), ("onnxruntime", "onnxruntime_onnx", ""), ("python", "", "python")],
)
def test_config_for_manifest(make_manifest: MakeManifest, target: str, platform: str, backend: str) -> None:
    manifest = make_manifest(target=target)
    rendered = config_for_manifest(
        manifest, max_batch_size=16, preferred_batch_size=(8, 16, 64), kind="KIND_CPU"
    ).render()
    config = parse(rendered)
    assert (config.name, config.platform, config.backend) == ("bga_mner", platform, backend)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        (name, model_config_pb2.TYPE_INT64, [-1]) for name in ("input_ids", "attention_mask", "casing_ids")
    ]
    assert [(t.name, list(t.dims)) for t in config.output] == [("emissions", [-1, 9])]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]  # 64 > max_batch_size dropped
    [warmup] = config.model_warmup
    assert warmup.batch_size == 16
    assert sorted(warmup.inputs) == ["attention_mask", "casing_ids", "input_ids"]
    assert list(warmup.inputs["input_ids"].dims) == [32]


def test_invalid_configs() -> None:
    with pytest.raises(ValueError, match="exactly one of platform or backend"):
        TritonModelConfig(name="m", max_batch_size=1, inputs=[], outputs=[])
    with pytest.raises(ValueError, match="exactly one of platform or backend"):
        TritonModelConfig(name="m", platform="x", backend="y", max_batch_size=1, inputs=[], outputs=[])


def test_config_for_manifest_needs_batching(make_manifest: MakeManifest) -> None:
    with pytest.raises(ValueError, match="batch-first"):
        config_for_manifest(make_manifest(), max_batch_size=0)
