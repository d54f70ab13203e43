"""Averaging the weights of the last N epochs (a cheap ensemble that costs nothing at inference).

The trainer keeps a CPU copy of the weights after each of the last N main epochs; at the end the
average is scored on dev and kept only when it beats the best single epoch there. Integer buffers
(position ids, counters) are not averaged: they are taken from the newest epoch.
"""

from __future__ import annotations

from collections import deque

import torch


class LastEpochsAverage:
    def __init__(self, count: int) -> None:
        self.count = count
        self._states: deque[dict[str, torch.Tensor]] = deque(maxlen=max(1, count))

    def __len__(self) -> int:
        return len(self._states)

    def add(self, state_dict: dict[str, torch.Tensor]) -> None:
        if self.count > 0:
            copy = {key: value.detach().to("cpu", copy=True) for key, value in state_dict.items()}
            self._states.append(copy)

    @property
    def ready(self) -> bool:
        """True once N (at least 2) epochs are held: averaging one epoch is that epoch."""
        return self.count >= 2 and len(self._states) == self.count

    def average(self) -> dict[str, torch.Tensor]:
        if not self._states:
            raise ValueError("no epochs to average")
        newest = self._states[-1]
        averaged: dict[str, torch.Tensor] = {}
        for key, value in newest.items():
            if value.is_floating_point():
                stacked = torch.stack([state[key].to(torch.float32) for state in self._states])
                averaged[key] = stacked.mean(dim=0).to(value.dtype)
            else:
                averaged[key] = value.clone()
        return averaged
