"""URL fetching refuses everything it was not told to allow, and a failed fetch degrades to text only."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from bga_mner.images import ImageError
from bga_mner.posts import ImageRef, LimitSettings
from tests.core.images.test_decode import png
from worker.images import FetchingImages, ImageFetcher, ImageFetchError
from worker.settings import ImageSettings


def test_fetching_is_off_by_default() -> None:
    fetcher = ImageFetcher(ImageSettings())
    with pytest.raises(ImageFetchError, match="disabled"):
        fetcher.fetch("https://images.example.com/a.png")
    loader = FetchingImages(LimitSettings(), fetcher)
    assert loader.load(ImageRef(url="https://images.example.com/a.png")) is None


def _never_resolve(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} must be refused before it is resolved")


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/a.png",  # not https
        "https://169.254.169.254/latest/meta-data",  # cloud metadata: not allow-listed
        "https://images.example.com.evil.net/a.png",
        "file:///etc/passwd",
        "https://evil.example\\@images.example.com/x",  # two parsers once disagreed on this host
        "https://evil.example\\.images.example.com/x",
        "https://user:secret@images.example.com/a.png",  # user info
        "https://images.example.com@evil.example/a.png",
        "https://[::1/x",  # urllib's ValueError once crash-looped the worker
        "https://[::1]/a.png",
        "//images.example.com/a.png",
    ],
)
def test_refuses_urls_outside_the_policy(url: str) -> None:
    fetcher = ImageFetcher(
        ImageSettings(fetch_urls=True, allowed_hosts=["images.example.com"]), resolver=_never_resolve
    )
    with pytest.raises(ImageFetchError):
        fetcher.fetch(url)
    # In the worker a refused URL only means: tagged from the text.
    assert FetchingImages(LimitSettings(), fetcher).load(ImageRef(url=url)) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.251",  # multicast
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::",
    ],
)
def test_an_allowed_host_that_resolves_inside_the_network_is_refused(address: str) -> None:
    """DNS of an allow-listed name is not trusted: every address it resolves to must be public."""
    fetcher = ImageFetcher(
        ImageSettings(fetch_urls=True, allowed_hosts=["images.example.com"]),
        resolver=lambda host, port: ["93.184.216.34", address],
    )
    with pytest.raises(ImageFetchError, match="non-public"):
        fetcher.fetch("https://images.example.com/a.png")


# --- a real HTTPS server on 127.0.0.1 with a throw-away CA, for the fetch path -------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


IMAGE = png(12, 12)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok.png":
            self._reply(200, IMAGE)
        elif self.path == "/big.png":
            self._reply(200, b"x" * 50_000)
        elif self.path == "/same-host-redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.end_headers()
        elif self.path == "/slow-drip.png":  # a byte every 0.4 s, forever (until the client gives up)
            self.send_response(200)
            self.send_header("Content-Length", str(len(IMAGE) * 100))
            self.end_headers()
            try:
                for byte in IMAGE * 100:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.4)
            except OSError:
                return
        elif self.path == "/other-host-redirect":
            self.send_response(302)
            self.send_header("Location", "https://127.0.0.1:1/ok.png")
            self.end_headers()
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tls_files: tuple[Path, Path]) -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _fetcher(tls_files: tuple[Path, Path], **overrides: object) -> ImageFetcher:
    """The test server is on loopback: only an operator's explicit opt-in lets the fetcher go there."""
    settings = ImageSettings.model_validate(
        {
            "fetch_urls": True,
            "allowed_hosts": ["localhost"],
            "timeout_s": 5.0,
            "allow_private_addresses": True,
            **overrides,
        }
    )
    return ImageFetcher(settings, ca_certs=str(tls_files[0]), resolver=lambda host, port: ["127.0.0.1"])


def test_fetches_from_an_allowed_https_host(https_server: int, tls_files: tuple[Path, Path]) -> None:
    fetcher = _fetcher(tls_files)
    assert fetcher.fetch(f"https://localhost:{https_server}/ok.png") == IMAGE
    assert fetcher.fetch(f"https://localhost:{https_server}/same-host-redirect") == IMAGE
    image = FetchingImages(LimitSettings(), fetcher).load(
        ImageRef(url=f"https://localhost:{https_server}/ok.png")
    )
    assert image is not None and image.size == (12, 12)


def test_fetch_refuses_redirects_to_other_hosts_and_big_bodies(
    https_server: int, tls_files: tuple[Path, Path]
) -> None:
    fetcher = _fetcher(tls_files, max_bytes=10_000)
    with pytest.raises(ImageFetchError, match=r"another host|not in the allow-list"):
        fetcher.fetch(f"https://localhost:{https_server}/other-host-redirect")
    with pytest.raises(ImageFetchError, match="10000"):
        fetcher.fetch(f"https://localhost:{https_server}/big.png")
    with pytest.raises(ImageFetchError, match="404"):
        fetcher.fetch(f"https://localhost:{https_server}/missing.png")


def test_loopback_is_refused_unless_the_operator_allows_private_addresses(
    https_server: int, tls_files: tuple[Path, Path]
) -> None:
    fetcher = _fetcher(tls_files, allow_private_addresses=False)
    with pytest.raises(ImageFetchError, match="non-public"):
        fetcher.fetch(f"https://localhost:{https_server}/ok.png")


def test_a_slow_drip_server_is_cut_off_at_the_total_deadline(
    https_server: int, tls_files: tuple[Path, Path]
) -> None:
    """A byte every 0.4 s never trips a per-read timeout; the one deadline per image ends it."""
    fetcher = _fetcher(tls_files, timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(ImageFetchError, match=r"longer than 1.5 s|download failed"):
        fetcher.fetch(f"https://localhost:{https_server}/slow-drip.png")
    assert time.monotonic() - started < 2.5


def test_fetch_failures_degrade_to_text_only(https_server: int, tls_files: tuple[Path, Path]) -> None:
    untrusted = ImageFetcher(ImageSettings(fetch_urls=True, allowed_hosts=["localhost"], timeout_s=5.0))
    loader = FetchingImages(LimitSettings(), untrusted)  # the system CAs do not trust the test server
    assert loader.load(ImageRef(url=f"https://localhost:{https_server}/ok.png")) is None
    with pytest.raises(ImageError):  # inline bytes are the post's own fault
        loader.load(ImageRef(data=b"garbage", url=f"https://localhost:{https_server}/ok.png"))
