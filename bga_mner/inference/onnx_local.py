"""The exported model run in-process with ONNX Runtime: `bga-mner tag`, export parity and benchmarks.

It reads the very ``model.onnx`` that Triton's python backend serves, so the embedded results
equal the streaming worker's.

Session options (``session_options``), chosen by measurement on 2 shared cores
(benchmarks/pipeline.py, docs/performance.md):

- intra-op threads: the caller's (``--threads``); default ``DEFAULT_THREADS`` = 1. One thread is the
  cheapest in CPU seconds per post: a second thread speeds up one batch by well under 2x (the small
  head ops do not parallelise) and, in a worker, competes with tokenisation, decoding and the Kafka
  and Redis clients on the same cores;
- no spinning: ONNX Runtime's pool threads busy-wait between ops by default, burning a core that
  the process (or the worker next to it) needs; ``allow_spinning = 0`` puts them to sleep instead;
- one inter-op thread, sequential execution: the graph is a chain, parallel branches gain nothing;
- graph optimisation ``ORT_ENABLE_ALL``: constant folding plus the transformer fusions ONNX Runtime
  applies online (LayerNorm, GELU, bias+GELU, MatMul+Add into Gemm/FusedMatMul); the export's lean
  graph is written so that these patterns match.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bga_mner.errors import ConfigurationError

DEFAULT_THREADS = 1


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """The ONNX Runtime options every in-process session of this project uses (see the module doc)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = DEFAULT_THREADS if threads is None else max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxBackend:
    """``InferenceBackend`` over an ``onnxruntime.InferenceSession`` on CPU."""

    def __init__(self, model_path: Path, threads: int | None = None, output_name: str = "emissions") -> None:
        if not model_path.is_file():
            raise ConfigurationError(
                f"no ONNX model at {model_path}: in-process tagging runs the onnxruntime and python "
                "targets' model.onnx (a TensorRT repository holds only model.plan)"
            )
        self._session = ort.InferenceSession(
            str(model_path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_name = output_name

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        missing = [name for name in self._input_names if name not in inputs]
        if missing:
            raise ValueError(f"the model needs inputs {missing}; got {sorted(inputs)}")
        feed = {name: inputs[name] for name in self._input_names}
        (emissions,) = self._session.run([self._output_name], feed)
        return np.asarray(emissions, dtype=np.float32)
