"""Where a post's image comes from: the ``ImageSource`` the tagger asks, and the inline-only source.

The tagger does not know about networks: it asks an ``ImageSource`` for a post's image. The
core's ``InlineImages`` decodes the post's own bytes and ignores URLs (what `bga-mner tag` and the
parity checks need); the worker plugs in a source that may also fetch allow-listed URLs.
"""

from __future__ import annotations

from typing import Protocol

from PIL import Image

from bga_mner.images.decode import decode_image
from bga_mner.posts import ImageRef, LimitSettings


class ImageSource(Protocol):
    def load(self, ref: ImageRef) -> Image.Image | None:
        """The image, None when there is none to use (the post is tagged from its text), or
        ``ImageError`` when the post's own bytes can never be decoded (the post is dead-lettered)."""
        ...


class InlineImages:
    """Decodes a post's inline image bytes under ``limits``; URLs are not fetched."""

    def __init__(self, limits: LimitSettings | None = None) -> None:
        self._limits = limits if limits is not None else LimitSettings()

    def load(self, ref: ImageRef) -> Image.Image | None:
        return decode_image(ref.data, self._limits) if ref.data is not None else None
