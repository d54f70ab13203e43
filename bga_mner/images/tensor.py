"""Pixels into the image encoder's input tensor: the one resize-and-normalise of training and serving.

The manifest's ``ImageSpec`` (size, mean, std) is what the image encoder was trained with; both the
training data loader and the serving tagger call ``image_tensor`` with it, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def image_tensor(
    image: Image.Image, size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> npt.NDArray[np.float32]:
    """``float32 [3, size, size]``: RGB, bicubic square resize, scaled to [0, 1], then normalised."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    array: npt.NDArray[Any] = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
