"""Inference backends: Triton over gRPC for the streaming worker, ONNX Runtime in-process for `tag`."""

from __future__ import annotations

from worker.inference.backend import InferenceBackend, InferenceRejected, InferenceUnavailable

__all__ = ["InferenceBackend", "InferenceRejected", "InferenceUnavailable"]
