"""Generator losses: set reconstruction (patches and tokens are unordered) and contrastive alignment."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the True positions: [B, N, D], [B, N] -> [B, D] (zeros for empty rows)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def relevance_pool(x: torch.Tensor, scores: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """Softmax(relevance)-weighted mean over the True positions ([B, N, D] -> [B, D]); plain mean without
    scores. Used for the contrastive loss, so that the sampler's scores learn which positions make a
    pair recognisable (the hard top-k selection alone passes them no such signal)."""
    if scores is None:
        return masked_mean(x, mask)
    weights = torch.softmax(scores.masked_fill(~mask, -1e4), dim=1) * mask.to(x.dtype)
    return (x * weights.unsqueeze(-1)).sum(dim=1)


def set_reconstruction(
    generated: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Symmetric Chamfer distance in cosine space between a generated set [B, Q, D] and a target set
    [B, N, D]: every generated slot should be close to some target item, and every target item should be
    covered by some slot. Averaged over `rows` [B] that have at least one target; 0 when none."""
    rows = rows & target_mask.any(dim=1)
    if not bool(rows.any()):
        return generated.sum() * 0.0
    generated, target, target_mask = generated[rows], target[rows], target_mask[rows]
    distance = 1.0 - torch.matmul(F.normalize(generated, dim=-1), F.normalize(target, dim=-1).transpose(1, 2))
    far = torch.finfo(distance.dtype).max / 4
    to_target = distance.masked_fill(~target_mask[:, None, :], far).min(dim=2).values.mean(dim=1)
    to_generated = distance.min(dim=1).values
    coverage = (to_generated * target_mask).sum(dim=1) / target_mask.sum(dim=1)
    return (0.5 * (to_target + coverage)).mean()


def info_nce(
    first: torch.Tensor, second: torch.Tensor, rows: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE between paired [B, D] embeddings over `rows`; needs >= 2 rows (else 0)."""
    if int(rows.sum()) < 2:
        return first.sum() * 0.0
    a, b = F.normalize(first[rows], dim=-1), F.normalize(second[rows], dim=-1)
    logits = a @ b.t() / temperature
    targets = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
