"""Micro-batches by count and by the oldest item's wait.

Triton is efficient on full batches, but a quiet stream must not hold a post for long: a batch
goes out when it is full or when its oldest item has waited ``max_wait_s``, whichever is first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    def __init__(self, max_size: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._items: list[T] = []
        self._added_at: list[float] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)
        self._added_at.append(self._clock())

    def take_ready(self) -> list[list[T]]:
        """Full batches, plus the partial one if its oldest item has waited long enough."""
        batches: list[list[T]] = []
        while len(self._items) >= self._max_size:
            batches.append(self._items[: self._max_size])
            del self._items[: self._max_size], self._added_at[: self._max_size]
        if self._items and self.seconds_until_due() <= 0:
            batches.append(self.flush())
        return batches

    def seconds_until_due(self) -> float:
        """How long until the partial batch is due (inf when empty): a bound for the poll timeout."""
        if not self._added_at:
            return float("inf")
        return max(0.0, self._added_at[0] + self._max_wait_s - self._clock())

    def flush(self) -> list[T]:
        """Everything buffered, as one batch (possibly larger than max_size; callers split)."""
        items = self._items
        self._items, self._added_at = [], []
        return items

    def discard(self, keep: Callable[[T], bool]) -> list[T]:
        """Remove the items ``keep`` rejects (those of revoked partitions); return them."""
        kept = [(item, at) for item, at in zip(self._items, self._added_at, strict=True) if keep(item)]
        removed = [item for item in self._items if not keep(item)]
        self._items = [item for item, _ in kept]
        self._added_at = [at for _, at in kept]
        return removed
