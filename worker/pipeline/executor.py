"""Batches in flight: a bounded number run at once in a thread pool, the rest wait for a slot.

The loop submits full batches and polls for finished ones; it never blocks on a batch (except in
``join``, during shutdown). ``backlogged`` tells the loop to pause consumption: batches are waiting
for a slot, so taking more from Kafka would only grow memory. A batch's exception is returned with
it, not raised, so that the loop decides what it means by its kind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from kafka import TopicPartition

from worker.pipeline.items import Item
from worker.pipeline.processing import Outcome


@dataclass(frozen=True)
class FinishedBatch:
    items: list[Item]
    outcomes: list[Outcome] | None  # one per item; None when the batch failed
    error: BaseException | None = None


class BatchExecutor:
    def __init__(
        self,
        process: Callable[[Sequence[Item]], list[Outcome]],
        max_in_flight: int,
        *,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` is a test knob (default: a thread pool of ``max_in_flight`` threads)."""
        self._process = process
        self._max_in_flight = max_in_flight
        self._executor = executor or ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="batch")
        self._waiting: deque[list[Item]] = deque()
        self._running: dict[Future[list[Outcome]], list[Item]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def backlogged(self) -> bool:
        """Batches wait for a free slot: consumption should pause."""
        return bool(self._waiting)

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._running

    def submit(self, batch: list[Item]) -> None:
        if batch:
            self._waiting.append(batch)
            self._dispatch()

    def poll(self) -> list[FinishedBatch]:
        """Batches finished since the last call; frees their slots for waiting ones."""
        finished = [self._finish(future) for future in list(self._running) if future.done()]
        self._dispatch()
        return finished

    def join(self, timeout_s: float) -> list[FinishedBatch]:
        """Wait up to ``timeout_s`` for at least one running batch to finish, then ``poll``."""
        if self._running:
            wait(list(self._running), timeout=max(0.0, timeout_s), return_when=FIRST_COMPLETED)
        return self.poll()

    def discard(self, partitions: frozenset[TopicPartition]) -> tuple[int, int]:
        """Drop waiting posts of revoked ``partitions``: (posts dropped, running batches touching them).

        Running batches cannot be recalled; their results are ignored for partitions no longer owned.
        """
        before = sum(len(batch) for batch in self._waiting)
        kept = [[item for item in batch if item.tp not in partitions] for batch in self._waiting]
        self._waiting = deque(batch for batch in kept if batch)
        dropped = before - sum(len(batch) for batch in self._waiting)
        running = sum(1 for batch in self._running.values() if any(i.tp in partitions for i in batch))
        return dropped, running

    def close(self) -> None:
        """Stop without waiting: running batches finish in the background, their results unused."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        while self._waiting and len(self._running) < self._max_in_flight:
            batch = self._waiting.popleft()
            self._running[self._executor.submit(self._process, batch)] = batch

    def _finish(self, future: Future[list[Outcome]]) -> FinishedBatch:
        items = self._running.pop(future)
        error = future.exception()
        if error is not None:
            return FinishedBatch(items, None, error)
        return FinishedBatch(items, future.result())
