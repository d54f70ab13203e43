"""Micro-batches go out when full or when their oldest post has waited max_wait."""

from __future__ import annotations

from worker.pipeline.batcher import MicroBatcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_full_batches_go_out_at_once_and_the_rest_waits() -> None:
    clock = Clock()
    batcher: MicroBatcher[int] = MicroBatcher(max_size=4, max_wait_s=0.5, clock=clock)
    for item in range(10):
        batcher.add(item)
    assert batcher.take_ready() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(batcher) == 2
    assert batcher.seconds_until_due() == 0.5


def test_partial_batch_is_due_after_its_oldest_item_waited() -> None:
    clock = Clock()
    batcher: MicroBatcher[str] = MicroBatcher(max_size=10, max_wait_s=0.5, clock=clock)
    assert batcher.seconds_until_due() == float("inf")
    batcher.add("a")
    clock.now += 0.3
    batcher.add("b")
    assert batcher.take_ready() == []
    assert abs(batcher.seconds_until_due() - 0.2) < 1e-9
    clock.now += 0.2
    assert batcher.take_ready() == [["a", "b"]]
    assert len(batcher) == 0


def test_leftover_keeps_its_own_age() -> None:
    clock = Clock()
    batcher: MicroBatcher[int] = MicroBatcher(max_size=2, max_wait_s=1.0, clock=clock)
    batcher.add(1)
    batcher.add(2)
    clock.now += 0.9
    batcher.add(3)
    assert batcher.take_ready() == [[1, 2]]
    assert abs(batcher.seconds_until_due() - 1.0) < 1e-9  # item 3 is new


def test_zero_wait_sends_every_poll() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(max_size=100, max_wait_s=0.0, clock=Clock())
    batcher.add(1)
    assert batcher.take_ready() == [[1]]


def test_discard_removes_items_of_revoked_partitions() -> None:
    clock = Clock()
    batcher: MicroBatcher[tuple[int, int]] = MicroBatcher(max_size=10, max_wait_s=1.0, clock=clock)
    for item in [(0, 1), (1, 1), (0, 2)]:
        batcher.add(item)
    removed = batcher.discard(lambda item: item[0] != 0)
    assert removed == [(0, 1), (0, 2)]
    assert batcher.flush() == [(1, 1)]
