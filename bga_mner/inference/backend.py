"""What the tagger needs from a model server, so Triton and in-process ONNX Runtime are interchangeable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy.typing as npt

from bga_mner.errors import RejectedError, TransientError


class InferenceUnavailable(TransientError):
    """The model could not be reached or did not answer in time; retrying the same batch later may succeed.

    Nothing may be committed while this is raised: the batch is still owed.
    """


class InferenceRejected(RejectedError):
    """The server refused the request itself (wrong shapes or dtypes): retrying cannot help.

    The inputs are built by our own preprocessing, so this means the deployment is inconsistent
    (a model that does not match its manifest), which is systemic rather than a bad post.
    """


class InferenceBackend(Protocol):
    """A model that maps padded text inputs to per-subword emissions."""

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """Emissions ``float32 [B, S, L]`` for ``inputs`` as produced by ``pad_batch``.

        Raises ``InferenceUnavailable`` when the model cannot be reached (retryable).
        """
        ...
