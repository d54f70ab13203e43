"""Post images in the worker: URL fetching under an allow-list, and the image source the tagger asks."""

from __future__ import annotations

from worker.images.fetch import ImageFetcher, ImageFetchError
from worker.images.source import FetchingImages

__all__ = ["FetchingImages", "ImageFetchError", "ImageFetcher"]
