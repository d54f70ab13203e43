"""Multi-level cross-modal generator (MCG): latent translation text -> image and image -> text.

Each direction is a small query decoder: learned queries cross-attend to the (kept) features of the
source modality and become pseudo features of the target modality. Patches and tokens are unordered sets,
so queries are slots, not positions. text2image is multi-level: it reads several encoder layers (each
with its own level embedding added to the queries) and mixes the per-level outputs with learned softmax
weights, so low layers (lexical) and high layers (contextual) both shape the pseudo patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.model.attention import CrossAttentionLayer
from training.model.config import GeneratorConfig


class QueryDecoder(nn.Module):
    def __init__(self, dim: int, queries: int, levels: int, config: GeneratorConfig, dropout: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.level_embeddings = nn.Parameter(torch.zeros(levels, dim))
        self.level_logits = nn.Parameter(torch.zeros(levels))
        self.layers = nn.ModuleList(
            CrossAttentionLayer(dim, config.heads, config.ffn_dim, dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, sources: Sequence[torch.Tensor], mask: torch.Tensor, levels: Sequence[int] | None = None
    ) -> torch.Tensor:
        """sources: one [B, N, D] tensor per level (same mask [B, N]); `levels` picks their level ids
        (default: the last len(sources) levels, so a single source is the top level). -> [B, Q, D]."""
        count = self.level_embeddings.shape[0]
        ids = list(levels) if levels is not None else list(range(count - len(sources), count))
        weights = torch.softmax(self.level_logits[ids], dim=0)
        batch = sources[0].shape[0]
        mixed = torch.zeros(batch, *self.queries.shape, dtype=sources[0].dtype, device=sources[0].device)
        for position, (level, source) in enumerate(zip(ids, sources, strict=True)):
            query = (self.queries + self.level_embeddings[level]).unsqueeze(0).expand(batch, -1, -1)
            for layer in self.layers:
                query = layer(query, source, mask)
            mixed = mixed + weights[position] * self.norm(query)
        return mixed


class CrossModalGenerator(nn.Module):
    def __init__(self, dim: int, config: GeneratorConfig, dropout: float) -> None:
        super().__init__()
        self.text2image_decoder = QueryDecoder(dim, config.image_queries, len(config.levels), config, dropout)
        self.image2text_decoder = QueryDecoder(dim, config.text_queries, 1, config, dropout)

    def text2image(
        self, levels: Sequence[torch.Tensor], mask: torch.Tensor, level_ids: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Pseudo visual patches [B, image_queries, D] from text features (one tensor per level)."""
        return self.text2image_decoder(levels, mask, level_ids)  # type: ignore[no-any-return]

    def image2text(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pseudo text tokens [B, text_queries, D] from patch features."""
        return self.image2text_decoder([patches], mask)  # type: ignore[no-any-return]
