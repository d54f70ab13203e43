"""Linear-chain CRF over words, batched and vectorised (log-partition by the forward algorithm, Viterbi).

Masks may have holes (a word without subwords in the middle of a post): the CRF first moves the valid
positions of each row to the front, so every row is a contiguous chain of its real words, exactly the
chain the numpy decoder in `bga_mner.decoding` sees at serving time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from bga_mner.decoding import CRFParams


def compact(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Move the True positions of each row to the front (stable); return the new mask and gathered tensors."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    lengths = mask.sum(dim=1, keepdim=True)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    new_mask = positions < lengths
    gathered = []
    for tensor in tensors:
        index = order
        if tensor.dim() == 3:
            index = order.unsqueeze(-1).expand(-1, -1, tensor.shape[-1])
        gathered.append(torch.gather(tensor, 1, index))
    return new_mask, gathered


class CRF(nn.Module):
    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.start = nn.Parameter(torch.empty(num_labels).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_labels).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_labels, num_labels).uniform_(-0.1, 0.1))

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per row [B] for emissions [B, T, L] and a contiguous-from-the-left mask [B, T]."""
        batch, steps, _ = emissions.shape
        if steps == 0:
            return emissions.new_zeros(batch)
        alpha = self.start + emissions[:, 0]
        for t in range(1, steps):
            scores = alpha.unsqueeze(2) + self.transitions.unsqueeze(0) + emissions[:, t].unsqueeze(1)
            alpha = torch.where(mask[:, t : t + 1], torch.logsumexp(scores, dim=1), alpha)
        log_z = torch.logsumexp(alpha + self.end, dim=1)
        return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))

    def path_score(self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the given label paths [B] (contiguous masks)."""
        if labels.shape[1] == 0:
            return emissions.new_zeros(labels.shape[0])
        labels = torch.where(mask, labels, torch.zeros_like(labels))
        weights = mask.to(emissions.dtype)
        emit = torch.gather(emissions, 2, labels.unsqueeze(-1)).squeeze(-1)
        score = (emit * weights).sum(dim=1)
        trans = self.transitions[labels[:, :-1], labels[:, 1:]]
        score = score + (trans * weights[:, 1:]).sum(dim=1)
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        last_labels = torch.gather(labels, 1, last.unsqueeze(1)).squeeze(1)
        edges = self.start[labels[:, 0]] + self.end[last_labels]
        return score + edges * mask[:, 0].to(emissions.dtype)

    def neg_log_likelihood(
        self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """-log p(labels | emissions); rows without any word contribute 0. `mean` averages over rows."""
        mask, (emissions, labels) = compact(mask, emissions, labels)
        nll = self.log_partition(emissions, mask) - self.path_score(emissions, labels, mask)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        return nll.mean()

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best label path per row, one label per True position of `mask` (in order)."""
        mask, (emissions,) = compact(mask, emissions)
        batch, steps, _ = emissions.shape
        if steps == 0:
            return [[] for _ in range(batch)]
        score = self.start + emissions[:, 0]
        history = []
        for t in range(1, steps):
            candidates = score.unsqueeze(2) + self.transitions.unsqueeze(0)
            best, best_prev = candidates.max(dim=1)
            history.append(best_prev)
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
        score = score + self.end
        lengths = mask.sum(dim=1).tolist()
        paths: list[list[int]] = []
        for row in range(batch):
            length = int(lengths[row])
            if length == 0:
                paths.append([])
                continue
            label = int(score[row].argmax())
            path = [label]
            for t in range(length - 1, 0, -1):
                label = int(history[t - 1][row, label])
                path.append(label)
            paths.append(path[::-1])
        return paths

    def to_params(self) -> CRFParams:
        """The numpy parameters the serving decoder (`bga_mner.decoding.viterbi`) uses."""
        from bga_mner.decoding import CRFParams

        return CRFParams(
            start=self.start.detach().cpu().float().numpy().copy(),
            end=self.end.detach().cpu().float().numpy().copy(),
            transitions=self.transitions.detach().cpu().float().numpy().copy(),
        )
