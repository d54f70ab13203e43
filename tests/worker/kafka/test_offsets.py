"""The commit never passes unfinished work, whatever order batches finish in."""

from __future__ import annotations

import random

import pytest
from kafka.structs import TopicPartition

from worker.kafka.offsets import OffsetTracker

P0 = TopicPartition("posts", 0)
P1 = TopicPartition("posts", 1)


def test_nothing_committable_before_anything_is_done() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.track(P0, offset)
    assert tracker.committable() == {}
    assert tracker.in_flight() == 5


def test_out_of_order_completion_commits_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in range(10):
        tracker.track(P0, offset)
    tracker.mark_done(P0, [5, 6, 7, 8, 9])  # a later batch finishes first
    assert tracker.committable() == {}
    tracker.mark_done(P0, [0, 1, 2])
    assert tracker.committable() == {P0: 3}  # last contiguous processed (2) + 1
    tracker.mark_done(P0, [3, 4])
    assert tracker.committable() == {P0: 10}
    assert tracker.in_flight(P0) == 0


def test_gaps_in_offsets_do_not_block_the_commit() -> None:
    """Compacted topics and transaction markers leave holes; consumption order is what counts."""
    tracker = OffsetTracker()
    for offset in (3, 7, 8, 20):
        tracker.track(P0, offset)
    tracker.mark_done(P0, [3, 7])
    assert tracker.committable() == {P0: 8}
    tracker.mark_done(P0, [20, 8])
    assert tracker.committable() == {P0: 21}


def test_partitions_are_independent_and_commits_are_not_repeated() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.track(P0, offset)
        tracker.track(P1, offset + 100)
    tracker.mark_done(P1, [100, 101])
    assert tracker.committable() == {P1: 102}
    tracker.mark_committed({P1: 102})
    assert tracker.committable() == {}
    tracker.mark_done(P0, [0])
    assert tracker.committable() == {P0: 1}
    assert tracker.committable([P1]) == {}


def test_revoked_partitions_are_forgotten_and_late_results_ignored() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 0)
    tracker.track(P0, 1)
    tracker.forget([P0])
    tracker.mark_done(P0, [0, 1])  # a batch that finished after the revoke
    assert tracker.committable() == {}
    assert tracker.partitions() == []


def test_offsets_must_increase_per_partition() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 5)
    with pytest.raises(ValueError, match="after"):
        tracker.track(P0, 5)


def test_random_completion_orders_never_commit_past_unfinished_work() -> None:
    rng = random.Random(7)
    for _ in range(50):
        tracker = OffsetTracker()
        offsets = sorted(rng.sample(range(500), 60))
        for offset in offsets:
            tracker.track(P0, offset)
        finished: set[int] = set()
        order = offsets[:]
        rng.shuffle(order)
        committed = 0
        for offset in order:
            tracker.mark_done(P0, [offset])
            finished.add(offset)
            commit = tracker.committable().get(P0)
            if commit is not None:
                assert all(o in finished for o in offsets if o < commit)  # never past unfinished work
                assert commit >= committed  # never goes back
                committed = commit
                tracker.mark_committed({P0: commit})
        assert committed == offsets[-1] + 1


def test_late_results_of_an_earlier_assignment_leave_no_state_behind() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 10)
    tracker.mark_done(P0, [10])
    tracker.mark_done(P0, [10, 11, 3])  # replayed duplicates finishing late, and a never-tracked offset
    assert tracker.committable() == {P0: 11}
    tracker.track(P0, 11)
    assert tracker.committable() == {P0: 11}  # 11 was not pending when it was reported done
    tracker.mark_done(P0, [11])
    assert tracker.committable() == {P0: 12}


def test_resume_offset_is_the_first_message_not_done() -> None:
    tracker = OffsetTracker()
    assert tracker.resume_offset(P0) is None
    for offset in (4, 5, 6):
        tracker.track(P0, offset)
    assert tracker.resume_offset(P0) == 4
    tracker.mark_done(P0, [4, 6])
    assert tracker.resume_offset(P0) == 5
    tracker.mark_done(P0, [5])
    assert tracker.resume_offset(P0) == 7


def test_a_forgotten_partition_can_start_again_from_an_earlier_offset() -> None:
    """After an offset reset or a re-assignment the loop forgets the partition and tracks it afresh."""
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.track(P0, offset)
    tracker.mark_done(P0, [10])
    with pytest.raises(ValueError):
        tracker.track(P0, 4)
    tracker.forget([P0])
    tracker.track(P0, 4)
    tracker.mark_done(P0, [11, 12])  # late results of the earlier position change nothing
    assert tracker.committable() == {}
    tracker.mark_done(P0, [4])
    assert tracker.committable() == {P0: 5}
