"""Post images, decoded under limits, for image-aware models only.

Images come from strangers: a few kilobytes can claim gigapixels (decompression bombs), and a
URL can point into the cluster (SSRF). So bytes, pixels and formats are capped before any pixel
is decoded, and URL fetching is off unless an operator turns it on with an allow-list of hosts,
https only, a timeout, a size cap and no redirects to other hosts.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import numpy as np
import numpy.typing as npt
import urllib3
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

ImageErrorReason = Literal["undecodable_image", "image_too_large"]


class ImageError(Exception):
    """A post's image can never be used: the post is dead-lettered with ``reason``."""

    def __init__(self, reason: ImageErrorReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: ImageErrorReason = reason
        self.detail = detail


class ImageFetchError(Exception):
    """A URL could not (or may not) be fetched; the post is tagged from its text alone."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 5 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


@dataclass(frozen=True)
class UrlFetchPolicy:
    enabled: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    timeout_s: float = 3.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 3
    ca_certs: str | None = None  # a private CA bundle; None = the system's


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """An RGB image, or ``ImageError``; the pixel count is checked from the header before decoding."""
    if len(data) > limits.max_bytes:
        raise ImageError("image_too_large", f"{len(data)} bytes > {limits.max_bytes}")
    # Image.open reads only the header; the size check below runs before any pixel is decoded.
    # (Not warnings.catch_warnings() around Pillow's own bomb warning: it is not thread-safe, and
    # ``max_pixels`` is below Pillow's threshold anyway; beyond twice that, Pillow raises itself.)
    try:
        image = Image.open(io.BytesIO(data), formats=list(limits.formats))
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageError("image_too_large", f"{width}x{height} pixels > {limits.max_pixels}")
        image.seek(0)  # animated formats: the first frame only
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("undecodable_image", f"not one of {', '.join(limits.formats)}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError("undecodable_image", f"{type(exc).__name__}: {exc}") from exc


def image_tensor(
    image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]
) -> npt.NDArray[Any]:
    """``float32 [3, size, size]``, resized and normalised as the image encoder was trained."""
    resized = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class ImageFetcher:
    """Fetches image URLs under ``UrlFetchPolicy``; every refusal is an ``ImageFetchError``."""

    def __init__(self, policy: UrlFetchPolicy) -> None:
        self._policy = policy
        self._hosts = frozenset(h.lower() for h in policy.allowed_hosts)
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=policy.ca_certs,
            timeout=urllib3.Timeout(total=policy.timeout_s),
            retries=False,
        )

    def fetch(self, url: str) -> bytes:
        if not self._policy.enabled:
            raise ImageFetchError("image URL fetching is disabled")
        host = self._check_url(url)
        for _ in range(self._policy.max_redirects + 1):
            response = self._pool.request("GET", url, redirect=False, preload_content=False)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    target = urljoin(url, response.headers.get("Location", ""))
                    if (urlsplit(target).hostname or "").lower() != host:
                        raise ImageFetchError(f"redirect from {host} to another host refused: {target}")
                    self._check_url(target)  # and never down to plain http
                    url = target
                    continue
                if response.status != 200:
                    raise ImageFetchError(f"HTTP {response.status} from {url}")
                return self._read_capped(response)
            finally:
                response.release_conn()
        raise ImageFetchError(f"more than {self._policy.max_redirects} redirects")

    def _check_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ImageFetchError(
                f"only https image URLs are fetched, not {parts.scheme or 'a relative URL'}"
            )
        host = (parts.hostname or "").lower()
        if host not in self._hosts:
            raise ImageFetchError(f"host {host!r} is not in the allow-list")
        return host

    def _read_capped(self, response: urllib3.BaseHTTPResponse) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self._policy.max_bytes:
            raise ImageFetchError(f"image of {declared} bytes > {self._policy.max_bytes}")
        body = bytearray()
        for chunk in response.stream(64 * 1024):
            body.extend(chunk)
            if len(body) > self._policy.max_bytes:
                raise ImageFetchError(f"image larger than {self._policy.max_bytes} bytes")
        return bytes(body)


class ImageLoader:
    """Turns a post's image reference into pixels: inline bytes first, then (if allowed) its URL.

    Inline bytes that cannot be decoded are the post's fault (``ImageError`` -> dead letter); a URL
    that cannot be fetched is not, so the post is tagged from its text alone (returns None).
    """

    def __init__(self, limits: ImageLimits, fetcher: ImageFetcher | None = None) -> None:
        self._limits = limits
        self._fetcher = fetcher

    def load(self, data: bytes | None, url: str | None) -> Image.Image | None:
        if data is not None:
            return decode_image(data, self._limits)
        if url is None or self._fetcher is None:
            return None
        try:
            fetched = self._fetcher.fetch(url)
        except (ImageFetchError, urllib3.exceptions.HTTPError) as exc:
            log.info("image URL not used", extra={"fields": {"url": url, "reason": str(exc)}})
            return None
        try:
            return decode_image(fetched, self._limits)
        except ImageError as exc:
            log.info("fetched image not used", extra={"fields": {"url": url, "reason": str(exc)}})
            return None
