"""The tensors one training or evaluation step hands to the model (built by training/data)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """All tensors on one device.

    The CRF runs over words: `word_index` points at each word's first subword, `word_mask` says which
    words exist and have a subword; labels are per word and ignored where `word_mask` is False.
    """

    input_ids: torch.Tensor  # int64 [B, S]
    attention_mask: torch.Tensor  # int64 [B, S]
    casing_ids: torch.Tensor  # int64 [B, S], 0 on specials and padding
    word_index: torch.Tensor  # int64 [B, W], -1 = padding / no subword
    word_mask: torch.Tensor  # bool [B, W]
    labels: torch.Tensor | None = None  # int64 [B, W]
    pixel_values: torch.Tensor | None = None  # float [B, 3, H, W]
    image_mask: torch.Tensor | None = None  # bool [B], a real image is present

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            f.name: value.to(device) if isinstance(value := getattr(self, f.name), torch.Tensor) else value
            for f in fields(self)
        }
        return replace(self, **moved)

    @property
    def has_images(self) -> bool:
        """True when at least one row carries a real image (otherwise the image encoder is skipped)."""
        return self.pixel_values is not None and self.image_mask is not None and bool(self.image_mask.any())
