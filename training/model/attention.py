"""Masked multi-head cross-attention written with plain matmuls.

Hand-written rather than `nn.MultiheadAttention` so that (a) a query row whose memory is entirely masked
returns exactly zero instead of NaN (posts without an image, empty kept sets) and (b) the ONNX trace is a
plain MatMul/Softmax graph that every runtime (ONNX Runtime, TensorRT) handles with dynamic shapes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MASK_VALUE = -1e4  # finite, so an all-masked row stays NaN-free (also in fp16)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """query [B,Q,D] attends to memory [B,N,D] where memory_mask [B,N] is True; returns [B,Q,D]."""
        q, k, v = (
            self._split(self.query(query)),
            self._split(self.key(memory)),
            self._split(self.value(memory)),
        )
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~memory_mask[:, None, None, :], MASK_VALUE)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = torch.matmul(weights, v).transpose(1, 2).reshape(query.shape)
        has_memory = memory_mask.any(dim=1).to(mixed.dtype)[:, None, None]
        projected: torch.Tensor = self.out(mixed)
        return projected * has_memory


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class CrossAttentionLayer(nn.Module):
    """Pre-norm transformer decoder layer without self-attention: cross-attention + feed-forward."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(dim)
        self.attention = CrossAttention(dim, heads, dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        query = query + self.dropout(
            self.attention(self.norm_query(query), self.norm_memory(memory), memory_mask)
        )
        update: torch.Tensor = self.dropout(self.ffn(self.norm_ffn(query)))
        return query + update
