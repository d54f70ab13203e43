"""Images are decoded under limits before any pixel is, and tensorised as the image encoder expects."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bga_mner.images import ImageError, InlineImages, decode_image, image_tensor
from bga_mner.posts import IMAGE_FORMATS, ImageRef, LimitSettings


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
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
    image = decode_image(png(20, 10), LimitSettings())
    assert image.mode == "RGB"
    assert image.size == (20, 10)


def test_rejects_too_many_bytes() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(png(20, 10), LimitSettings(max_image_bytes=10))
    assert info.value.reason == "image_too_large"


def test_rejects_a_decompression_bomb_before_decoding_pixels() -> None:
    bomb = png_bomb(100_000, 100_000)  # 10 gigapixels in a few hundred bytes
    assert len(bomb) < 10_000
    with pytest.raises(ImageError) as info:
        decode_image(bomb, LimitSettings(max_image_pixels=4096 * 4096))
    assert info.value.reason == "image_too_large"


def test_rejects_more_pixels_than_the_limit() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(png(100, 100), LimitSettings(max_image_pixels=99 * 100))
    assert info.value.reason == "image_too_large"
    assert "100x100" in info.value.detail


def test_rejects_garbage_and_truncated_files() -> None:
    with pytest.raises(ImageError) as garbage:
        decode_image(b"definitely not an image", LimitSettings())
    assert garbage.value.reason == "undecodable_image"
    with pytest.raises(ImageError) as truncated:
        decode_image(png(64, 64)[:60], LimitSettings())
    assert truncated.value.reason == "undecodable_image"


def test_rejects_formats_outside_the_allow_list() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(ImageError) as info:
        decode_image(buffer.getvalue(), LimitSettings())
    assert info.value.reason == "undecodable_image"
    assert "TIFF" not in IMAGE_FORMATS


def test_image_tensor_is_normalised_chw() -> None:
    tensor = image_tensor(Image.new("RGB", (30, 20), (255, 0, 127)), 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert tensor.shape == (3, 16, 16)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(tensor[1], -1.0, atol=1e-6)


def test_inline_images_decode_bytes_and_ignore_urls() -> None:
    source = InlineImages()
    image = source.load(ImageRef(data=png(4, 4)))
    assert image is not None and image.size == (4, 4)
    assert source.load(ImageRef(url="https://images.example.com/a.png")) is None
    with pytest.raises(ImageError):
        source.load(ImageRef(data=b"garbage"))
