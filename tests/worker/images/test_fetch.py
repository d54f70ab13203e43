"""URL fetching refuses everything it was not told to allow, and a failed fetch degrades to text only."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
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


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/a.png",  # not https
        "https://169.254.169.254/latest/meta-data",  # cloud metadata: not allow-listed
        "https://images.example.com.evil.net/a.png",
        "file:///etc/passwd",
    ],
)
def test_refuses_urls_outside_the_policy(url: str) -> None:
    fetcher = ImageFetcher(ImageSettings(fetch_urls=True, allowed_hosts=["images.example.com"]))
    with pytest.raises(ImageFetchError):
        fetcher.fetch(url)


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
    settings = ImageSettings.model_validate(
        {"fetch_urls": True, "allowed_hosts": ["localhost"], "timeout_s": 5.0, **overrides}
    )
    return ImageFetcher(settings, ca_certs=str(tls_files[0]))


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
    with pytest.raises(ImageFetchError, match="another host"):
        fetcher.fetch(f"https://localhost:{https_server}/other-host-redirect")
    with pytest.raises(ImageFetchError, match="10000"):
        fetcher.fetch(f"https://localhost:{https_server}/big.png")
    with pytest.raises(ImageFetchError, match="404"):
        fetcher.fetch(f"https://localhost:{https_server}/missing.png")


def test_fetch_failures_degrade_to_text_only(https_server: int, tls_files: tuple[Path, Path]) -> None:
    untrusted = ImageFetcher(ImageSettings(fetch_urls=True, allowed_hosts=["localhost"], timeout_s=5.0))
    loader = FetchingImages(LimitSettings(), untrusted)  # the system CAs do not trust the test server
    assert loader.load(ImageRef(url=f"https://localhost:{https_server}/ok.png")) is None
    with pytest.raises(ImageError):  # inline bytes are the post's own fault
        loader.load(ImageRef(data=b"garbage", url=f"https://localhost:{https_server}/ok.png"))
