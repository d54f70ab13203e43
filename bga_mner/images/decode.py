"""Image bytes from strangers into RGB pixels, under limits checked before any pixel is decoded.

A few kilobytes can claim gigapixels (a decompression bomb), so bytes, pixel count and format are
capped from the header first. Serving decodes post images with this, and training decodes the
benchmark's image files with it, so both see exactly the same pixels.
"""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image, UnidentifiedImageError

from bga_mner.errors import InvalidInput
from bga_mner.posts.limits import IMAGE_FORMATS, LimitSettings

ImageErrorReason = Literal["undecodable_image", "image_too_large"]


class ImageError(InvalidInput):
    """A post's image can never be used: the post is dead-lettered with ``reason``."""

    def __init__(self, reason: ImageErrorReason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason: ImageErrorReason = reason


def decode_image(data: bytes, limits: LimitSettings) -> Image.Image:
    """An RGB image, or ``ImageError``; the pixel count is checked from the header before decoding."""
    if len(data) > limits.max_image_bytes:
        raise ImageError("image_too_large", f"{len(data)} bytes > {limits.max_image_bytes}")
    # Image.open reads only the header; the size check below runs before any pixel is decoded.
    # (Not warnings.catch_warnings() around Pillow's own bomb warning: it is not thread-safe, and
    # ``max_image_pixels`` is below Pillow's threshold anyway; beyond twice that, Pillow raises itself.)
    try:
        image = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise ImageError("image_too_large", f"{width}x{height} pixels > {limits.max_image_pixels}")
        image.seek(0)  # animated formats: the first frame only
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("undecodable_image", f"not one of {', '.join(IMAGE_FORMATS)}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError("undecodable_image", f"{type(exc).__name__}: {exc}") from exc
