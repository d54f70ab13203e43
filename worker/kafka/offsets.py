"""Which offset it is safe to commit, per partition, while batches finish out of order.

Batches run concurrently and Redis may acknowledge a later batch before an earlier one, so the
committable offset is the first message (in consumption order) that is not done yet, or the
last done message + 1 when nothing is pending. Tracking consumption order rather than offset
arithmetic keeps this right on topics with gaps (compaction, transaction markers).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka.structs import TopicPartition


@dataclass
class _PartitionState:
    pending: deque[int] = field(default_factory=deque)  # offsets in consumption order, not yet released
    pending_set: set[int] = field(default_factory=set)  # the same, for membership tests
    done: set[int] = field(default_factory=set)  # finished offsets still behind an unfinished one
    next_commit: int | None = None  # last released offset + 1
    committed: int | None = None  # what the broker holds for us (as far as we know)


class OffsetTracker:
    """Per-partition bookkeeping of consumed, finished and committed offsets (one thread only)."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}

    def track(self, tp: TopicPartition, offset: int) -> None:
        """Record a consumed message; it blocks the commit of anything after it until it is done."""
        state = self._partitions.setdefault(tp, _PartitionState())
        if state.pending and offset <= state.pending[-1]:
            raise ValueError(f"{tp}: offset {offset} consumed after {state.pending[-1]}")
        state.pending.append(offset)
        state.pending_set.add(offset)

    def mark_done(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """Finished work (in Redis or in the DLQ). Offsets of partitions no longer tracked are ignored:
        their partition was revoked and the new owner replays them (the sink is idempotent)."""
        state = self._partitions.get(tp)
        if state is None:
            return
        # Offsets not pending (already released, or from a batch of an earlier assignment) change nothing.
        state.done.update(o for o in offsets if o in state.pending_set)
        while state.pending and state.pending[0] in state.done:
            offset = state.pending.popleft()
            state.pending_set.discard(offset)
            state.done.discard(offset)
            state.next_commit = offset + 1

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        """Consumed but not yet releasable messages (of one partition, or all)."""
        states = self._partitions.values() if tp is None else [self._partitions.get(tp, _PartitionState())]
        return sum(len(s.pending) for s in states)

    def resume_offset(self, tp: TopicPartition) -> int | None:
        """Where consumption must resume for nothing to be skipped: the first message not done."""
        state = self._partitions.get(tp)
        if state is None:
            return None
        return state.pending[0] if state.pending else state.next_commit

    def committable(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets to commit now: only partitions whose safe offset moved past what was committed."""
        wanted = self._partitions.keys() if partitions is None else partitions
        result: dict[TopicPartition, int] = {}
        for tp in wanted:
            state = self._partitions.get(tp)
            if state is None or state.next_commit is None:
                continue
            if state.committed is None or state.next_commit > state.committed:
                result[tp] = state.next_commit
        return result

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = offset if state.committed is None else max(state.committed, offset)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions: what was not committed is the next owner's to replay."""
        for tp in partitions:
            self._partitions.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._partitions)
