from __future__ import annotations

import torch

from training.model.config import GeneratorConfig
from training.model.generator import CrossModalGenerator


def test_generator_shapes_and_levels() -> None:
    torch.manual_seed(0)
    config = GeneratorConfig(
        image_queries=6, text_queries=5, layers=2, heads=2, ffn_dim=32, levels=[-1, -2, 0]
    )
    generator = CrossModalGenerator(16, config, dropout=0.0)
    levels = [torch.randn(3, 11, 16) for _ in config.levels]
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[2, 4:] = False
    pseudo_image = generator.text2image(levels, mask)
    assert pseudo_image.shape == (3, 6, 16)
    pseudo_text = generator.image2text(torch.randn(3, 49, 16), torch.ones(3, 49, dtype=torch.bool))
    assert pseudo_text.shape == (3, 5, 16)
    # one source is read as the top level (the cycle image -> text -> image feeds pseudo text back)
    assert generator.text2image([pseudo_text], torch.ones(3, 5, dtype=torch.bool)).shape == (3, 6, 16)
    # every level influences the output
    changed = [levels[0], levels[1] + torch.randn_like(levels[1]), levels[2]]
    assert not torch.allclose(generator.text2image(changed, mask), pseudo_image)


def test_masked_positions_are_ignored_and_empty_sources_are_finite() -> None:
    torch.manual_seed(0)
    config = GeneratorConfig(image_queries=4, text_queries=4, heads=2, ffn_dim=32, levels=[-1])
    generator = CrossModalGenerator(16, config, dropout=0.0)
    source = torch.randn(2, 7, 16)
    mask = torch.tensor([[True] * 4 + [False] * 3, [False] * 7])
    out = generator.text2image([source], mask)
    noisy = source.clone()
    noisy[0, 4:] += 100.0
    assert torch.allclose(generator.text2image([noisy], mask), out)
    assert torch.isfinite(out).all()
