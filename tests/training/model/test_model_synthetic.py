"""On synthetic image-text pairs the generator learns: reconstruction falls, text2image meets the image."""

from __future__ import annotations

import pytest

from tests.training.model.synthetic import run_synthetic_alignment


@pytest.mark.slow
def test_text2image_moves_towards_the_paired_image() -> None:
    result = run_synthetic_alignment(steps=250, seed=0)
    before, after = result["before"], result["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["recon_t2i"] < 0.7 * before["recon_t2i"]
    assert after["recon_i2t"] < 0.7 * before["recon_i2t"]
    assert after["cycle"] < 0.7 * before["cycle"]
    assert after["cosine_paired"] > before["cosine_paired"] + 0.2
    assert after["cosine_paired"] > after["cosine_unpaired"] + 0.05  # specific to the pair, not generic
