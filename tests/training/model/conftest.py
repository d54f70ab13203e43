"""Tiny encoders saved as Hugging Face folders, so the model's real `from_pretrained(path)` code runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.model.synthetic import save_tiny_encoders
from training.model.batch import Batch
from training.model.config import ModelConfig

NUM_LABELS = 9


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: thread hand-offs cost more than they save (5x slower on busy shared cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_encoders(tmp_path_factory.mktemp("encoders"), seed=0)


@pytest.fixture
def tiny_config(tiny_encoders: tuple[Path, Path]) -> Callable[..., ModelConfig]:
    bert, vit = tiny_encoders

    def make(**overrides: Any) -> ModelConfig:
        settings: dict[str, Any] = {
            "text_encoder": str(bert),
            "image_encoder": str(vit),
            "hidden": 32,
            "casing_dim": 4,
            "dropout": 0.0,
            "fusion_heads": 2,
            "generator": {
                "image_queries": 4,
                "text_queries": 4,
                "heads": 2,
                "ffn_dim": 64,
                "levels": [-1, 1],
            },
        }
        settings.update(overrides)
        return ModelConfig(**settings)

    return make


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    return random_batch


def random_batch(seed: int, with_images: bool, rows: int = 4, length: int = 12) -> Batch:
    """A padded batch with ragged rows, a word without subwords and labels on the word positions."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, 26, (rows, length), generator=generator)
    attention_mask = torch.ones(rows, length, dtype=torch.long)
    casing_ids = torch.randint(1, 13, (rows, length), generator=generator)
    lengths = [length, length - 3, length - 5, 4][:rows]
    word_index = torch.full((rows, 8), -1)
    for row, size in enumerate(lengths):
        attention_mask[row, size:] = 0
        input_ids[row, size:] = 0
        casing_ids[row, size:] = 0
        casing_ids[row, [0, size - 1]] = 0  # [CLS] / [SEP]
        input_ids[row, 0], input_ids[row, size - 1] = 2, 3
        words = list(range(1, size - 1, 2))[:8]
        word_index[row, : len(words)] = torch.tensor(words)
    word_index[0, 2] = -1  # a word with zero subwords in the middle of a post
    word_mask = word_index >= 0
    labels = torch.randint(0, NUM_LABELS, word_index.shape, generator=generator).masked_fill(~word_mask, -100)
    pixel_values = torch.randn(rows, 3, 16, 16, generator=generator) if with_images else None
    image_mask = torch.tensor([True, False, True, True][:rows]) if with_images else None
    return Batch(
        input_ids, attention_mask, casing_ids, word_index, word_mask, labels, pixel_values, image_mask
    )
