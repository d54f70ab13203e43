"""Fetching post images by URL: off by default, and only from allow-listed hosts when on.

A URL in a post is attacker-controlled and can point into the cluster (SSRF), so an operator must
turn fetching on (``BGA_IMAGES__FETCH_URLS``) with an allow-list of hosts; only https is fetched,
with a timeout, a size cap and no redirects to other hosts.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import urllib3

from worker.errors import WorkerError
from worker.settings import ImageSettings


class ImageFetchError(WorkerError):
    """A URL could not (or may not) be fetched; the post is tagged from its text alone."""


class ImageFetcher:
    """Fetches image URLs under ``ImageSettings``; every refusal is an ``ImageFetchError``.

    ``ca_certs`` (a test knob) trusts a private CA bundle instead of the system's.
    """

    def __init__(self, settings: ImageSettings, *, ca_certs: str | None = None) -> None:
        self._settings = settings
        self._hosts = frozenset(h.lower() for h in settings.allowed_hosts)
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            timeout=urllib3.Timeout(total=settings.timeout_s),
            retries=False,
        )

    def fetch(self, url: str) -> bytes:
        if not self._settings.fetch_urls:
            raise ImageFetchError("image URL fetching is disabled")
        host = self._check_url(url)
        for _ in range(self._settings.max_redirects + 1):
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
        raise ImageFetchError(f"more than {self._settings.max_redirects} redirects")

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
        limit = self._settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ImageFetchError(f"image of {declared} bytes > {limit}")
        body = bytearray()
        for chunk in response.stream(64 * 1024):
            body.extend(chunk)
            if len(body) > limit:
                raise ImageFetchError(f"image larger than {limit} bytes")
        return bytes(body)
