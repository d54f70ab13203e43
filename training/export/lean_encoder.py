"""The text encoder (a Hugging Face BERT) rewritten for inference from its trained weights.

Why not trace the Hugging Face module itself: its attention exports with a ``finfo.min`` additive mask
(far beyond fp16's range) plus ``IsNaN``/``Where(-inf)`` scrubs around the softmax, which blocks fused
attention in TensorRT and costs time in ONNX Runtime; and its query, key and value are three MatMuls.
Here the mask is a finite additive bias computed once per batch (``MASK_BIAS``, safe in fp16), the
softmax scale is folded into the query weights, and query/key/value are one fused projection. The
arithmetic is otherwise that of ``BertModel`` in eval mode (absolute positions, token type 0, exact
GELU), which the parity tests check against the training graph.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

# Added to the attention scores of padded keys: exp(-1e4) is 0 in fp32 and fp16, and -1e4 plus any real
# score stays inside fp16's range (|x| <= 65504), unlike finfo(float32).min.
MASK_BIAS = -1.0e4


class UnsupportedModel(ValueError):
    """The trained module is not one the lean builder knows; export the training graph instead."""


def frozen_embedding(weight: torch.Tensor) -> nn.Embedding:
    """An embedding table holding a copy of ``weight`` (inference only)."""
    table = nn.Embedding(int(weight.shape[0]), int(weight.shape[1]))
    with torch.no_grad():
        table.weight.copy_(weight.detach())
    table.weight.requires_grad_(False)
    return table


def _copy_linear(source: nn.Linear) -> nn.Linear:
    target = nn.Linear(source.in_features, source.out_features, bias=source.bias is not None)
    target.load_state_dict(source.state_dict())
    return target


def _copy_norm(source: nn.LayerNorm) -> nn.LayerNorm:
    target = nn.LayerNorm(source.normalized_shape, eps=source.eps)
    target.load_state_dict(source.state_dict())
    return target


class LeanBertLayer(nn.Module):
    """One post-norm BERT layer: fused QKV projection (scale folded into Q), attention, FFN."""

    def __init__(self, layer: Any, heads: int) -> None:
        super().__init__()
        attention = layer.attention.self
        query, key, value = attention.query, attention.key, attention.value
        width = int(query.in_features)
        if width % heads:
            raise UnsupportedModel(f"hidden size {width} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(width, 3 * width)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([query.weight * scale, key.weight, value.weight], dim=0))
            self.qkv.bias.copy_(torch.cat([query.bias * scale, key.bias, value.bias], dim=0))
        self.attention_out = _copy_linear(layer.attention.output.dense)
        self.attention_norm = _copy_norm(layer.attention.output.LayerNorm)
        self.intermediate = _copy_linear(layer.intermediate.dense)
        self.output = _copy_linear(layer.output.dense)
        self.output_norm = _copy_norm(layer.output.LayerNorm)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        """hidden [B, S, D], mask_bias [B, 1, 1, S] (0 or MASK_BIAS) -> [B, S, D]."""
        batch, length, width = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, S, hd]
        scores = torch.matmul(q, k.transpose(-1, -2)) + mask_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        context = context.transpose(1, 2).reshape(batch, length, width)
        attended = self.attention_norm(self.attention_out(context) + hidden)
        inner = nn.functional.gelu(self.intermediate(attended))
        out: torch.Tensor = self.output_norm(self.output(inner) + attended)
        return out


class LeanBertEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> hidden states [embeddings, layer 1, ..., layer N]``."""

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        config = getattr(backbone, "config", None)
        if config is None or getattr(config, "model_type", None) != "bert":
            raise UnsupportedModel(f"the lean encoder rewrites BERT backbones, not {type(backbone).__name__}")
        if getattr(config, "hidden_act", None) != "gelu":
            raise UnsupportedModel(
                f"activation {config.hidden_act!r}: the lean encoder implements exact gelu"
            )
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModel("only absolute position embeddings are supported")
        embeddings = backbone.embeddings
        self.word = frozen_embedding(embeddings.word_embeddings.weight)
        # Position and token type (always 0 for one-segment input) folded into one table.
        positions = embeddings.position_embeddings.weight.detach()
        token_type = embeddings.token_type_embeddings.weight.detach()[0]
        self.register_buffer("position_table", (positions + token_type).clone(), persistent=False)
        self.embedding_norm = _copy_norm(embeddings.LayerNorm)
        self.layers = nn.ModuleList(
            LeanBertLayer(layer, int(config.num_attention_heads)) for layer in backbone.encoder.layer
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        length = input_ids.shape[1]
        position_table = cast(torch.Tensor, self.position_table)
        hidden = self.embedding_norm(self.word(input_ids) + position_table[:length].unsqueeze(0))
        bias = (1.0 - attention_mask.to(hidden.dtype)) * MASK_BIAS
        mask_bias = bias[:, None, None, :]
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden, mask_bias)
            states.append(hidden)
        return states
