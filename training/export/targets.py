"""The three export targets and what each puts in the model repository.

All three serve the same ONNX graph's inputs and outputs; they differ only in how Triton runs it: a
TensorRT engine (GPU, FP16), Triton's ONNX Runtime backend, or the project's python-backend model with
ONNX Runtime inside (the only one the CPU Triton of the local stack can serve).
"""

from __future__ import annotations

import enum
import importlib.resources
from pathlib import Path

# The contract's tensors (docs/contract.md), in this order in every target.
INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "casing_ids")
OUTPUT_NAME = "emissions"
# Package data of the installed distribution, not a path into the checkout.
PYTHON_BACKEND_MODEL = Path(str(importlib.resources.files("model_repo.python_backend") / "model.py"))


class Target(enum.StrEnum):
    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"
    PYTHON = "python"

    @property
    def platform(self) -> str | None:
        """Triton ``platform`` for config.pbtxt (None: the target names a ``backend`` instead)."""
        return {Target.TENSORRT: "tensorrt_plan", Target.ONNXRUNTIME: "onnxruntime_onnx"}.get(self)

    @property
    def backend(self) -> str:
        return {Target.TENSORRT: "tensorrt", Target.ONNXRUNTIME: "onnxruntime", Target.PYTHON: "python"}[self]

    @property
    def model_file(self) -> str:
        """The file Triton loads from the version directory."""
        return {Target.TENSORRT: "model.plan", Target.ONNXRUNTIME: "model.onnx", Target.PYTHON: "model.py"}[
            self
        ]

    @property
    def needs_gpu(self) -> bool:
        return self is Target.TENSORRT
