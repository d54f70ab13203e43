"""The worker's image source: a post's inline bytes first, then (if the operator allows it) its URL.

Inline bytes that cannot be decoded are the post's fault (``ImageError`` -> dead letter); a URL
that cannot be fetched or decoded is not, so the post is tagged from its text alone (None).
"""

from __future__ import annotations

import logging

from PIL import Image

from bga_mner.images import ImageError, decode_image
from bga_mner.posts import ImageRef, LimitSettings
from worker.images.fetch import ImageFetcher, ImageFetchError

log = logging.getLogger(__name__)


class FetchingImages:
    """``bga_mner.images.ImageSource`` that may also fetch URLs (``fetcher`` None: inline bytes only)."""

    def __init__(self, limits: LimitSettings, fetcher: ImageFetcher | None = None) -> None:
        self._limits = limits
        self._fetcher = fetcher

    def load(self, ref: ImageRef) -> Image.Image | None:
        if ref.data is not None:
            return decode_image(ref.data, self._limits)
        if ref.url is None or self._fetcher is None:
            return None
        try:
            fetched = self._fetcher.fetch(ref.url)
        except Exception as exc:  # a URL that cannot be fetched is never the post's fault
            reason = str(exc) if isinstance(exc, ImageFetchError) else f"{type(exc).__name__}: {exc}"
            log.info("image URL not used", extra={"fields": {"url": ref.url[:500], "reason": reason}})
            return None
        try:
            return decode_image(fetched, self._limits)
        except ImageError as exc:
            log.info("fetched image not used", extra={"fields": {"url": ref.url[:500], "reason": str(exc)}})
            return None
