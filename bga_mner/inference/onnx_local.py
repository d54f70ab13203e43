"""The exported model run in-process with ONNX Runtime: `bga-mner tag`, export parity and benchmarks.

It reads the very ``model.onnx`` that Triton's python backend serves, so the embedded results
equal the streaming worker's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bga_mner.errors import ConfigurationError


class OnnxBackend:
    """``InferenceBackend`` over an ``onnxruntime.InferenceSession`` on CPU."""

    def __init__(self, model_path: Path, threads: int | None = None, output_name: str = "emissions") -> None:
        if not model_path.is_file():
            raise ConfigurationError(
                f"no ONNX model at {model_path}: in-process tagging runs the onnxruntime and python "
                "targets' model.onnx (a TensorRT repository holds only model.plan)"
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
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
