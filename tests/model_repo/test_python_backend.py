"""model_repo/python_backend/model.py outside Triton: configuration checks and batching arithmetic.

The Triton path itself (requests in, tensors out) runs in tests/integration/test_smoke_stack.py;
here the parts that need no server are checked with a real ONNX Runtime session on a tiny graph.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bga_mner.stack.triton import tritonserver_dir

MODEL_PY = Path(__file__).resolve().parents[2] / "model_repo" / "python_backend" / "model.py"
LABELS = 4
VOCAB = 16


@pytest.fixture(scope="module")
def backend() -> ModuleType:
    """model.py imported the way the stub imports it, with Triton's own triton_python_backend_utils."""
    sys.path.insert(0, str(tritonserver_dir() / "backends" / "python"))
    try:
        spec = importlib.util.spec_from_file_location("bga_python_backend_model", MODEL_PY)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.pop(0)


def write_onnx(path: Path) -> None:
    """emissions[b, s] = table[input_ids[b, s]] * attention_mask[b, s]: position-wise, padding is inert."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(VOCAB * LABELS, dtype=np.float32).reshape(VOCAB, LABELS) / 7.0
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask3"]),
            helper.make_node("Mul", ["rows", "mask3"], ["emissions"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
        ],
        [helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["b", "s", LABELS])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1]), "last"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def model_args(tmp_path: Path, inputs: list[str], max_batch_size: int = 8) -> dict[str, str]:
    (tmp_path / "1").mkdir(exist_ok=True)
    write_onnx(tmp_path / "1" / "model.onnx")
    config: dict[str, Any] = {
        "name": "tiny",
        "max_batch_size": max_batch_size,
        "input": [{"name": name, "data_type": "TYPE_INT64", "dims": ["-1"]} for name in inputs],
        "output": [{"name": "emissions", "data_type": "TYPE_FP32", "dims": ["-1", str(LABELS)]}],
        "parameters": {"INTRA_OP_THREADS": {"string_value": "1"}},
    }
    return {
        "model_config": json.dumps(config),
        "model_repository": str(tmp_path),
        "model_version": "1",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
    }


def request(lengths: list[int], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    longest = max(lengths)
    ids = rng.integers(1, VOCAB, size=(len(lengths), longest)).astype(np.int64)
    mask = (np.arange(longest)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_requests_of_different_lengths_run_together_as_they_would_alone(
    backend: ModuleType, tmp_path: Path
) -> None:
    model = backend.TritonPythonModel()
    model.initialize(model_args(tmp_path, ["input_ids", "attention_mask"]))
    requests = [request([3, 5], seed=1), request([9], seed=2), request([2, 2, 4], seed=3)]
    together = model._run_together(requests)
    assert len(together) == 3
    for feeds, (emissions,) in zip(requests, together, strict=True):
        (alone,) = model._run(feeds)
        assert emissions.shape == alone.shape == (*feeds["input_ids"].shape, LABELS)
        assert emissions.dtype == np.float32
        np.testing.assert_array_equal(emissions, alone)


def test_config_and_graph_must_agree(backend: ModuleType, tmp_path: Path) -> None:
    model = backend.TritonPythonModel()
    with pytest.raises(ValueError, match=r"inputs not in the ONNX graph \['casing_ids'\]"):
        model.initialize(model_args(tmp_path, ["input_ids", "attention_mask", "casing_ids"]))
    with pytest.raises(ValueError, match=r"ONNX inputs \['attention_mask'\] are not declared"):
        model.initialize(model_args(tmp_path, ["input_ids"]))


def test_initialize_refuses_numpy_2(
    backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(np, "__version__", "2.1.3")
    with pytest.raises(RuntimeError, match="numpy<2"):
        backend.TritonPythonModel().initialize(model_args(tmp_path, ["input_ids", "attention_mask"]))
    backend.check_numpy("1.26.4")


def test_padding_and_splitting_undo_each_other(backend: ModuleType) -> None:
    a = np.ones((2, 3), dtype=np.int64)
    b = np.full((1, 5), 7, dtype=np.int64)
    padded = backend.pad_axis1([a, b])
    assert [p.shape for p in padded] == [(2, 5), (1, 5)]
    assert padded[0][:, 3:].sum() == 0
    output = np.concatenate(padded)[..., None].astype(np.float32)
    first, second = backend.split_back(output, [2, 1], [3, 5])
    assert first.shape == (2, 3, 1) and second.shape == (1, 5, 1)
    np.testing.assert_array_equal(first[..., 0], a)
