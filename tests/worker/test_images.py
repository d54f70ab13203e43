"""Images are decoded under limits, and URL fetching refuses everything it was not told to allow."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import ssl
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.images import (
    ImageError,
    ImageFetcher,
    ImageFetchError,
    ImageLimits,
    ImageLoader,
    UrlFetchPolicy,
    decode_image,
    image_tensor,
)


def _png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width x height`` pixels: its IDAT is zlib of zeros (compresses ~1000:1)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    raw = zlib.compress(b"\x00" * ((width // 8 + 1) * min(height, 64)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_decodes_a_png_to_rgb() -> None:
    image = decode_image(_png(20, 10), ImageLimits())
    assert image.mode == "RGB"
    assert image.size == (20, 10)


def test_rejects_too_many_bytes() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(_png(20, 10), ImageLimits(max_bytes=10))
    assert info.value.reason == "image_too_large"


def test_rejects_a_decompression_bomb_before_decoding_pixels() -> None:
    bomb = _png_bomb(100_000, 100_000)  # 10 gigapixels in a few hundred bytes
    assert len(bomb) < 10_000
    with pytest.raises(ImageError) as info:
        decode_image(bomb, ImageLimits(max_pixels=4096 * 4096))
    assert info.value.reason == "image_too_large"


def test_rejects_more_pixels_than_the_limit() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(_png(100, 100), ImageLimits(max_pixels=99 * 100))
    assert info.value.reason == "image_too_large"
    assert "100x100" in info.value.detail


def test_rejects_garbage_and_truncated_files() -> None:
    with pytest.raises(ImageError) as garbage:
        decode_image(b"definitely not an image", ImageLimits())
    assert garbage.value.reason == "undecodable_image"
    with pytest.raises(ImageError) as truncated:
        decode_image(_png(64, 64)[:60], ImageLimits())
    assert truncated.value.reason == "undecodable_image"


def test_rejects_formats_outside_the_allow_list() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(ImageError) as info:
        decode_image(buffer.getvalue(), ImageLimits())
    assert info.value.reason == "undecodable_image"
    assert decode_image(buffer.getvalue(), ImageLimits(formats=("TIFF",))).size == (8, 8)


def test_image_tensor_is_normalised_chw() -> None:
    tensor = image_tensor(Image.new("RGB", (30, 20), (255, 0, 127)), 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert tensor.shape == (3, 16, 16)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(tensor[1], -1.0, atol=1e-6)


def test_fetching_is_off_by_default() -> None:
    fetcher = ImageFetcher(UrlFetchPolicy())
    with pytest.raises(ImageFetchError, match="disabled"):
        fetcher.fetch("https://images.example.com/a.png")
    loader = ImageLoader(ImageLimits(), fetcher)
    assert loader.load(None, "https://images.example.com/a.png") is None


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
    fetcher = ImageFetcher(UrlFetchPolicy(enabled=True, allowed_hosts=frozenset({"images.example.com"})))
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


IMAGE = _png(12, 12)


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
    policy = UrlFetchPolicy(
        enabled=True, allowed_hosts=frozenset({"localhost"}), ca_certs=str(tls_files[0]), timeout_s=5.0
    )
    return ImageFetcher(dataclasses.replace(policy, **overrides))  # type: ignore[arg-type]


def test_fetches_from_an_allowed_https_host(https_server: int, tls_files: tuple[Path, Path]) -> None:
    fetcher = _fetcher(tls_files)
    assert fetcher.fetch(f"https://localhost:{https_server}/ok.png") == IMAGE
    assert fetcher.fetch(f"https://localhost:{https_server}/same-host-redirect") == IMAGE
    image = ImageLoader(ImageLimits(), fetcher).load(None, f"https://localhost:{https_server}/ok.png")
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
    untrusted = ImageFetcher(
        UrlFetchPolicy(enabled=True, allowed_hosts=frozenset({"localhost"}), timeout_s=5.0)
    )
    loader = ImageLoader(ImageLimits(), untrusted)  # the system CAs do not trust the test server
    assert loader.load(None, f"https://localhost:{https_server}/ok.png") is None
    with pytest.raises(ImageError):  # inline bytes are the post's own fault
        loader.load(b"garbage", f"https://localhost:{https_server}/ok.png")
