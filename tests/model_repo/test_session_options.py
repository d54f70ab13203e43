"""The python backend's ONNX Runtime options are the in-process backend's (one documented choice).

model.py runs in Triton's isolated interpreter and cannot import bga_mner, so it repeats the choice;
this test keeps the two copies equal and checks the choices themselves (no spinning threads, full
graph optimisation, one inter-op thread, sequential execution, a default of one intra-op thread).
"""

from __future__ import annotations

from types import ModuleType

import onnxruntime as ort
import pytest

from bga_mner.inference import onnx_local
from tests.model_repo.test_python_backend import backend  # noqa: F401  (the fixture)


def _describe(options: ort.SessionOptions) -> dict[str, object]:
    return {
        "intra": options.intra_op_num_threads,
        "inter": options.inter_op_num_threads,
        "mode": options.execution_mode,
        "level": options.graph_optimization_level,
        "spin_intra": options.get_session_config_entry("session.intra_op.allow_spinning"),
        "spin_inter": options.get_session_config_entry("session.inter_op.allow_spinning"),
    }


@pytest.mark.parametrize("threads", [None, 1, 2, 4])
def test_python_backend_uses_the_in_process_options(backend: ModuleType, threads: int | None) -> None:  # noqa: F811
    assert _describe(backend.session_options(ort, threads)) == _describe(onnx_local.session_options(threads))


def test_the_chosen_options() -> None:
    described = _describe(onnx_local.session_options())
    assert described == {
        "intra": 1,
        "inter": 1,
        "mode": ort.ExecutionMode.ORT_SEQUENTIAL,
        "level": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "spin_intra": "0",
        "spin_inter": "0",
    }
    assert _describe(onnx_local.session_options(3))["intra"] == 3
