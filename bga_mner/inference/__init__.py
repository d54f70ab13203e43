"""The inference-backend protocol and its errors; ``bga_mner.inference.onnx_local`` runs a model in-process.

``onnx_local`` is not imported here: it needs onnxruntime (the ``worker`` or ``training`` extra),
and the protocol must stay importable without it.
"""

from __future__ import annotations

from bga_mner.inference.backend import InferenceBackend, InferenceRejected, InferenceUnavailable

__all__ = ["InferenceBackend", "InferenceRejected", "InferenceUnavailable"]
