from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.images import ImageLoader


def test_loads_resizes_and_normalises_a_real_jpeg(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), color=(255, 0, 128)).save(tmp_path / "123.jpg")
    loader = ImageLoader(tmp_path, size=16)
    pixels, present = loader.load("123")
    assert present
    assert pixels.shape == (3, 16, 16) and pixels.dtype == np.float32
    # red channel: (1 - 0.485) / 0.229; green: (0 - 0.456) / 0.224
    assert pixels[0].mean() == pytest.approx((1 - 0.485) / 0.229, abs=0.02)
    assert pixels[1].mean() == pytest.approx((0 - 0.456) / 0.224, abs=0.02)
    assert loader.counts["loaded"] == 1


def test_grayscale_png_becomes_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 8), color=255).save(tmp_path / "7.png")
    pixels, present = ImageLoader(tmp_path, size=8).load("7")
    assert present and pixels.shape == (3, 8, 8)


def test_missing_and_corrupt_images_become_zero_and_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "9.jpg").write_bytes(b"not a jpeg at all")
    loader = ImageLoader(tmp_path, size=8)
    with caplog.at_level(logging.WARNING):
        corrupt, corrupt_present = loader.load("9")
    missing, missing_present = loader.load("does-not-exist")
    none, none_present = loader.load(None)
    assert not (corrupt_present or missing_present or none_present)
    for pixels in (corrupt, missing, none):
        assert pixels.shape == (3, 8, 8) and not pixels.any()
    assert (loader.counts["corrupt"], loader.counts["missing"]) == (1, 2)
    assert "unreadable" in caplog.text


def test_no_image_dir_means_every_image_is_missing() -> None:
    loader = ImageLoader(None, size=4)
    assert loader.load("1")[1] is False
    assert loader.counts["missing"] == 1
