"""Image decoding under limits and tensorisation, shared by training and serving."""

from __future__ import annotations

from bga_mner.images.decode import ImageError, ImageErrorReason, decode_image
from bga_mner.images.source import ImageSource, InlineImages
from bga_mner.images.tensor import IMAGENET_MEAN, IMAGENET_STD, image_tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageError",
    "ImageErrorReason",
    "ImageSource",
    "InlineImages",
    "decode_image",
    "image_tensor",
]
