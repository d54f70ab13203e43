"""Fusion: every text token cross-attends to the visual features (real or generated), gated residual.

The gate (per token and channel, from the token and what it read) lets tokens that gain nothing from the
image keep their text feature unchanged; a post without visual features gets a zero update.
"""

from __future__ import annotations

import torch
from torch import nn

from training.model.attention import CrossAttention, FeedForward


class GatedCrossModalFusion(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_text = nn.LayerNorm(dim)
        self.norm_visual = nn.LayerNorm(dim)
        self.attention = CrossAttention(dim, heads, dropout)
        self.gate = nn.Linear(2 * dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, 2 * dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text: torch.Tensor, visual: torch.Tensor, visual_mask: torch.Tensor) -> torch.Tensor:
        """text [B, S, D], visual [B, V, D], visual_mask [B, V] -> fused text [B, S, D]."""
        read = self.attention(self.norm_text(text), self.norm_visual(visual), visual_mask)
        gate = torch.sigmoid(self.gate(torch.cat([text, read], dim=-1)))
        fused: torch.Tensor = text + self.dropout(gate * read)
        update: torch.Tensor = self.dropout(self.ffn(self.norm_ffn(fused)))
        return fused + update
