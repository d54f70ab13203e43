"""The Triton python-backend model behind every `python` export target: ONNX Runtime inside Triton.

Triton's ONNX Runtime backend is not available everywhere this project runs (the CPU Triton from
the nvidia-pytriton wheel has only the python backend), so an exported `model.onnx` is served by
this one generic file instead. It is copied unchanged next to each exported `model.onnx`; input
and output names, dtypes and batching come from the model's config.pbtxt, never from this code.

Requests that Triton's dynamic batcher groups are concatenated along the batch axis and run in
one ONNX Runtime call; requests with different sequence lengths are right-padded with zeros to
the longest (attention masks pad with 0, so padded positions are ignored) and each response is cut
back to its own length. Optional config parameters: ONNX_FILE (default model.onnx),
INTRA_OP_THREADS (default 1).

ONNX Runtime session options (``session_options``; the same choices as
``bga_mner.inference.onnx_local.session_options``, which this isolated file cannot import, and a
test keeps the two equal): the configured intra-op threads, one inter-op thread, sequential
execution, no spinning (idle pool threads sleep instead of busy-waiting on cores that Triton's own
threads and, on a shared CPU machine, the worker need), and ``ORT_ENABLE_ALL`` graph optimisation
(constant folding and ONNX Runtime's online transformer fusions).

numpy 2 silently corrupts tensors crossing this backend's shared memory (measured: empty
outputs, wrong input values, no error), so `initialize` refuses to start under numpy >= 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils

PAD_VALUE = 0
DEFAULT_INTRA_OP_THREADS = 1
Array = npt.NDArray[Any]


def session_options(ort: Any, threads: int | None = None) -> Any:
    """The ``onnxruntime.SessionOptions`` this model runs with (see the module doc)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = DEFAULT_INTRA_OP_THREADS if threads is None else max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def check_numpy(version: str | None = None) -> None:
    version = version or np.__version__
    if int(version.split(".")[0]) >= 2:
        raise RuntimeError(
            f"numpy {version} in the python backend's environment: numpy >= 2 silently corrupts tensors "
            "in Triton's python backend; install numpy<2 in the EXECUTION_ENV_PATH environment"
        )


def pad_axis1(arrays: list[Array], pad_value: int = PAD_VALUE) -> list[Array]:
    """Right-pad axis 1 of each array to the longest; arrays of rank < 2 are returned as they are."""
    ranked = [a for a in arrays if a.ndim >= 2]
    if not ranked:
        return arrays
    longest = max(a.shape[1] for a in ranked)
    padded = []
    for array in arrays:
        if array.ndim < 2 or array.shape[1] == longest:
            padded.append(array)
            continue
        widths = [(0, 0)] * array.ndim
        widths[1] = (0, longest - array.shape[1])
        padded.append(np.pad(array, widths, constant_values=pad_value))
    return padded


def split_back(output: Array, batch_sizes: list[int], seq_lens: list[int | None]) -> list[Array]:
    """Cut a batched output into the requests' parts; undo axis-1 padding where the output has it."""
    parts = np.split(output, np.cumsum(batch_sizes)[:-1], axis=0)
    longest = max((n for n in seq_lens if n is not None), default=None)
    cut = []
    for part, seq_len in zip(parts, seq_lens, strict=True):
        if seq_len is not None and part.ndim >= 2 and part.shape[1] == longest and seq_len != longest:
            part = part[:, :seq_len]
        cut.append(np.ascontiguousarray(part))
    return cut


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        check_numpy()
        import onnxruntime as ort

        config: dict[str, Any] = json.loads(args["model_config"])
        self.name = config.get("name", "model")
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.input_names = [spec["name"] for spec in config["input"]]
        self.outputs = [
            (spec["name"], pb_utils.triton_string_to_numpy(spec["data_type"])) for spec in config["output"]
        ]
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        onnx_path = (
            Path(args["model_repository"]) / args["model_version"] / parameters.get("ONNX_FILE", "model.onnx")
        )
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{self.name}: no ONNX file at {onnx_path}")

        threads = parameters.get("INTRA_OP_THREADS", "")
        options = session_options(ort, int(threads) if threads else None)
        providers: list[Any] = ["CPUExecutionProvider"]
        if (
            args.get("model_instance_kind") == "GPU"
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(
                0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])})
            )
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)

        session_inputs = {i.name for i in self.session.get_inputs()}
        session_outputs = {o.name for o in self.session.get_outputs()}
        missing_in = sorted(set(self.input_names) - session_inputs)
        missing_out = sorted({name for name, _ in self.outputs} - session_outputs)
        if missing_in or missing_out:
            raise ValueError(
                f"{self.name}: config.pbtxt and {onnx_path.name} disagree: inputs not in the ONNX graph "
                f"{missing_in}, outputs not in the ONNX graph {missing_out} "
                f"(graph inputs {sorted(session_inputs)}, outputs {sorted(session_outputs)})"
            )
        unfed = sorted(session_inputs - set(self.input_names))
        if unfed:
            raise ValueError(f"{self.name}: ONNX inputs {unfed} are not declared in config.pbtxt")

    def _run(self, feeds: dict[str, Array]) -> list[Array]:
        names = [name for name, _ in self.outputs]
        results = self.session.run(names, feeds)
        return [
            np.asarray(r).astype(dtype, copy=False)
            for r, (_, dtype) in zip(results, self.outputs, strict=True)
        ]

    def _read(self, request: Any) -> dict[str, Array]:
        return {
            name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names
        }

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            per_request = [self._read(request) for request in requests]
            if not self.batched or len(per_request) == 1:
                outputs_per_request = [self._run(feeds) for feeds in per_request]
            else:
                outputs_per_request = self._run_together(per_request)
        except Exception as exc:  # every request of the batch gets the error, the model stays up
            error = pb_utils.TritonError(f"{self.name}: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, array)
                    for (name, _), array in zip(self.outputs, outputs, strict=True)
                ]
            )
            for outputs in outputs_per_request
        ]

    def _run_together(self, per_request: list[dict[str, Array]]) -> list[list[Array]]:
        first = per_request[0][self.input_names[0]]
        batch_sizes = [feeds[self.input_names[0]].shape[0] for feeds in per_request]
        seq_lens = [feeds[self.input_names[0]].shape[1] if first.ndim >= 2 else None for feeds in per_request]
        feeds = {
            name: np.concatenate(pad_axis1([f[name] for f in per_request]), axis=0)
            for name in self.input_names
        }
        batched = self._run(feeds)
        split = [split_back(output, batch_sizes, seq_lens) for output in batched]
        return [[parts[i] for parts in split] for i in range(len(per_request))]

    def finalize(self) -> None:
        self.session = None
