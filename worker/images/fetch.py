"""Fetching post images by URL: off by default, and only from allow-listed public hosts when on.

A URL in a post is attacker-controlled and can point into the cluster (SSRF), so an operator must
turn fetching on (``BGA_IMAGES__FETCH_URLS``) with an allow-list of hosts, and then:

- the URL is parsed **once**, with the same parser the download uses (urllib3's), and the download
  goes to exactly the host that was checked: no second parser that could read ``evil\\@allowed``
  differently; URLs with user info or a backslash are refused outright;
- only https, only allow-listed hosts, and the host's addresses are resolved here and **every one**
  must be public (no private, loopback, link-local, multicast, reserved or unspecified address, IPv4
  or IPv6, IPv4-mapped included); the connection goes to the checked address (no DNS rebinding
  between check and connect), with TLS verified against the host name;
- a redirect is followed only to the same host, and the target goes through every check again;
- one total deadline per image (``timeout_s``) covers resolving, connecting, redirects and the whole
  body: a server that drips a byte every few seconds is cut off at the deadline, not per read.

Every refusal or failure is an ``ImageFetchError``; the post is then tagged from its text alone.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import HTTPError, LocationParseError
from urllib3.util import Url, parse_url

from worker.errors import WorkerError
from worker.settings import ImageSettings

Resolver = Callable[[str, int], list[str]]
_RESOLVERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


class ImageFetchError(WorkerError):
    """A URL could not (or may not) be fetched; the post is tagged from its text alone."""


@dataclass(frozen=True)
class _Target:
    host: str  # lower-case host name (or IP literal) as parsed
    port: int
    path: str  # path and query, as sent


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def is_public(address: str) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class ImageFetcher:
    """Fetches image URLs under ``ImageSettings``; every refusal is an ``ImageFetchError``.

    ``ca_certs`` (trust a private CA bundle), ``resolver`` and ``clock`` are test knobs.
    """

    def __init__(
        self,
        settings: ImageSettings,
        *,
        ca_certs: str | None = None,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._hosts = frozenset(h.lower() for h in settings.allowed_hosts)
        self._ca_certs = ca_certs
        self._resolve = resolver
        self._clock = clock

    def fetch(self, url: str) -> bytes:
        if not self._settings.fetch_urls:
            raise ImageFetchError("image URL fetching is disabled")
        deadline = self._clock() + self._settings.timeout_s
        target = self._check(url)
        for _ in range(self._settings.max_redirects + 1):
            response = self._get(target, self._public_address(target, deadline), deadline)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = urljoin(
                        f"https://{target.host}:{target.port}{target.path}",
                        response.headers.get("Location", ""),
                    )
                    following = self._check(location)  # and never down to plain http
                    if following.host != target.host:
                        raise ImageFetchError(
                            f"redirect from {target.host} to another host refused: {location}"
                        )
                    target = following
                    continue
                if response.status != 200:
                    raise ImageFetchError(f"HTTP {response.status} from {target.host}")
                return self._read(response, deadline)
            finally:
                response.release_conn()
        raise ImageFetchError(f"more than {self._settings.max_redirects} redirects")

    def _check(self, url: str) -> _Target:
        if "\\" in url:
            raise ImageFetchError("a backslash in an image URL is refused (parsers disagree on it)")
        try:
            parsed: Url = parse_url(url)
        except (LocationParseError, ValueError) as exc:
            raise ImageFetchError(f"unparsable image URL: {exc}") from exc
        if parsed.scheme != "https":
            raise ImageFetchError(
                f"only https image URLs are fetched, not {parsed.scheme or 'a relative URL'}"
            )
        if parsed.auth is not None:
            raise ImageFetchError("image URLs with user info are refused")
        host = (parsed.host or "").lower().strip("[]")
        if host not in self._hosts:
            raise ImageFetchError(f"host {host!r} is not in the allow-list")
        return _Target(host, parsed.port or 443, parsed.request_uri)

    def _public_address(self, target: _Target, deadline: float) -> str:
        # getaddrinfo cannot be interrupted: it runs in a thread and is waited for until the deadline.
        lookup = _RESOLVERS.submit(self._resolve, target.host, target.port)
        try:
            addresses = lookup.result(timeout=self._remaining(deadline))
        except concurrent.futures.TimeoutError as exc:
            raise ImageFetchError(f"resolving {target.host} took longer than the deadline") from exc
        except OSError as exc:
            raise ImageFetchError(f"cannot resolve {target.host}: {exc}") from exc
        if not addresses:
            raise ImageFetchError(f"{target.host} resolves to no address")
        if not self._settings.allow_private_addresses:
            private = [a for a in addresses if not is_public(a)]
            if private:
                raise ImageFetchError(f"{target.host} resolves to non-public addresses {private}: refused")
        return addresses[0]

    def _get(self, target: _Target, address: str, deadline: float) -> Any:
        remaining = self._remaining(deadline)
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            server_hostname=target.host,  # SNI and certificate check against the name, not the address
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self._ca_certs,
            timeout=urllib3.Timeout(connect=remaining, read=remaining),
            retries=False,
            maxsize=1,
        )
        host_header = target.host if target.port == 443 else f"{target.host}:{target.port}"
        try:
            return pool.urlopen(
                "GET",
                target.path,
                headers={"Host": host_header},
                redirect=False,
                preload_content=False,
                release_conn=False,
            )
        except HTTPError as exc:
            raise ImageFetchError(f"cannot fetch from {target.host}: {exc}") from exc

    def _read(self, response: Any, deadline: float) -> bytes:
        limit = self._settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ImageFetchError(f"image of {declared} bytes > {limit}")
        # A watchdog ends the download at the deadline, whatever the server's pace: a read timeout
        # only bounds the silence between two bytes.
        watchdog = threading.Timer(self._remaining(deadline), response.shutdown)
        watchdog.daemon = True
        watchdog.start()
        body = bytearray()
        try:
            while True:
                chunk = response.read1(64 * 1024)
                if not chunk:
                    break
                body.extend(chunk)
                if len(body) > limit:
                    raise ImageFetchError(f"image larger than {limit} bytes")
                self._remaining(deadline)
        except (HTTPError, OSError, ValueError) as exc:
            self._remaining(deadline)  # a shutdown by the watchdog reports the deadline
            raise ImageFetchError(f"download failed: {type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()
        if self._clock() > deadline:
            raise ImageFetchError(f"the image took longer than {self._settings.timeout_s} s")
        return bytes(body)

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ImageFetchError(f"the image took longer than {self._settings.timeout_s} s")
        return remaining
