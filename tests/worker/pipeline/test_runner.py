"""The stream loop against an in-memory broker: deterministic, no threads, no sleeps.

Each test scripts what happens (which batches finish, which calls fail, when the group rebalances)
and checks the loop's promises: nothing is committed past work that is not in the sink or past a
dead letter that is not acknowledged, nothing is lost or written twice, errors are handled by kind.
The same loop runs against the real broker, Triton and Redis in tests/integration/test_worker_loop.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from bga_mner.inference import InferenceRejected, InferenceUnavailable
from tests.worker.pipeline.fakes import (
    FakeBroker,
    FakeConsumer,
    FakeDeadLetters,
    InlineExecutor,
    ManualExecutor,
    MemorySink,
    ScriptedTagger,
    post_json,
)
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.runner import ExitCode, StreamRunner
from worker.settings import (
    BatchingSettings,
    DeadLetterSettings,
    KafkaSettings,
    RetrySettings,
    WorkerSettings,
)
from worker.sinks.redis_sink import SinkRejected

TOPIC = "posts"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def settings(**batching: int) -> WorkerSettings:
    return WorkerSettings(
        kafka=KafkaSettings(topics=[TOPIC]),
        batching=BatchingSettings(
            **{"max_batch_size": 4, "max_wait_ms": 0, "max_in_flight_batches": 2, **batching}
        ),
        retry=RetrySettings(initial_s=0.001, max_s=0.001),
        dlq=DeadLetterSettings(max_consecutive=5),
        shutdown_grace_s=1.0,
    )


class Rig:
    """A runner wired to fakes; ``stop_after(n)`` ends ``run()`` at the n-th poll."""

    def __init__(self, config: WorkerSettings | None = None, executor: ManualExecutor | None = None) -> None:
        self.broker = FakeBroker()
        self.consumer = FakeConsumer(self.broker)
        self.dead_letters = FakeDeadLetters()
        self.tagger = ScriptedTagger()
        self.sink = MemorySink()
        self.metrics = WorkerMetrics()
        self.executor = executor if executor is not None else InlineExecutor()
        self.sleeps: list[float] = []
        self.runner = StreamRunner(
            config or settings(),
            self.consumer,
            self.dead_letters,
            self.tagger,
            self.sink,
            self.metrics,
            executor=self.executor,
            sleep=self.sleeps.append,
        )

    def produce(self, partition: int, count: int, start: int = 0) -> None:
        for index in range(start, start + count):
            self.broker.produce(TOPIC, partition, post_json(f"p{partition}-{index}"))

    def run_until(self, stop: Callable[[int], bool]) -> int:
        def on_poll(polls: int) -> None:
            if stop(polls):
                self.runner.request_stop()

        self.consumer.on_poll = on_poll
        return self.runner.run()

    def metric(self, line: str) -> bool:
        return line in self.metrics.exposition().decode()


def test_every_post_is_written_once_and_the_offsets_reach_the_end() -> None:
    rig = Rig()
    rig.produce(0, 7)
    rig.produce(1, 5)
    assert rig.run_until(lambda polls: polls > 3) == ExitCode.OK
    assert sorted(rig.sink.records) == sorted([f"p0-{i}" for i in range(7)] + [f"p1-{i}" for i in range(5)])
    assert rig.broker.committed == {P0: 7, P1: 5}
    assert rig.consumer.closed and rig.dead_letters.closed
    assert rig.metric("bga_mner_posts_tagged_total 12.0")


def test_bad_messages_are_dead_lettered_and_committed_only_after_their_ack() -> None:
    rig = Rig()
    rig.broker.produce(TOPIC, 0, post_json("good-0"))
    rig.broker.produce(TOPIC, 0, b"not json")
    rig.broker.produce(TOPIC, 0, None)  # a tombstone: counted, never sent
    rig.broker.produce(TOPIC, 0, post_json("good-1"))
    rig.dead_letters.flush_error = KafkaTimeoutError("no ack (test)")

    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK  # the DLQ's broker being away is no crash
    assert [reason for reason, _ in rig.dead_letters.sent] == ["invalid_json"]
    assert rig.dead_letters.acked == []
    # good-0 is done, but the unacknowledged dead letter at offset 1 holds the commit back.
    assert rig.broker.committed == {P0: 1}
    assert rig.metric('bga_mner_errors_total{stage="dead_letter"}')


def test_a_dead_letter_is_committed_once_acknowledged() -> None:
    rig = Rig()
    rig.broker.produce(TOPIC, 0, b"not json")
    rig.broker.produce(TOPIC, 0, None)
    rig.broker.produce(TOPIC, 0, post_json("good"))
    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK
    assert [reason for reason, _ in rig.dead_letters.acked] == ["invalid_json"]
    assert rig.broker.committed == {P0: 3}
    assert rig.metric('bga_mner_tombstones_total{topic="posts"} 1.0')
    assert 'reason="tombstone"' not in rig.metrics.exposition().decode()


def test_a_burst_of_tombstones_never_trips_the_dead_letter_limit() -> None:
    rig = Rig()  # max_consecutive=5
    for _ in range(50):
        rig.broker.produce(TOPIC, 0, None)
    rig.broker.produce(TOPIC, 0, post_json("after-the-deletes"))
    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK
    assert rig.dead_letters.sent == []
    assert list(rig.sink.records) == ["after-the-deletes"]
    assert rig.broker.committed == {P0: 51}


def test_nothing_is_committed_past_a_batch_that_has_not_finished() -> None:
    executor = ManualExecutor()
    rig = Rig(executor=executor)
    rig.produce(0, 6)
    runner = rig.runner
    runner.start()
    runner.step()
    runner.step()
    assert len(executor.queued) == 2 and rig.sink.records == {}
    assert rig.broker.commits == []
    executor.run_all()
    runner.step()
    assert rig.broker.committed == {P0: 6}


def test_backpressure_pauses_every_partition_while_batches_wait_and_resumes_after() -> None:
    executor = ManualExecutor()
    rig = Rig(settings(max_batch_size=2, max_in_flight_batches=1), executor)
    rig.produce(0, 6)
    rig.produce(1, 2)
    runner = rig.runner
    runner.start()
    runner.step()
    assert len(executor.queued) == 1  # one slot: the other batches wait
    assert rig.consumer.paused() == {P0, P1}
    polled_while_paused = rig.consumer.polls
    runner.step()
    assert rig.consumer.polls == polled_while_paused + 1  # polling goes on (group membership)
    for _ in range(6):
        executor.run_all()
        runner.step()
    assert rig.consumer.paused() == set()
    assert rig.broker.committed == {P0: 6, P1: 2}


def test_transient_failures_are_retried_in_the_batch_and_nothing_is_lost() -> None:
    rig = Rig()
    rig.produce(0, 4)
    rig.tagger.fail_with, rig.tagger.fail_times = InferenceUnavailable("triton down (test)"), 3
    rig.sink.fail_with, rig.sink.fail_times = InferenceUnavailable("redis down (test)"), 2
    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK
    assert len(rig.sleeps) == 5  # 3 tagging retries + 2 sink retries, each after a backoff
    assert sorted(rig.sink.records) == [f"p0-{i}" for i in range(4)]
    assert rig.broker.committed == {P0: 4}


def test_a_rejected_write_stops_the_worker_and_commits_none_of_it() -> None:
    rig = Rig()
    rig.produce(0, 4)
    rig.sink.fail_with, rig.sink.fail_times = SinkRejected("WRONGTYPE (test)"), 99
    assert rig.run_until(lambda polls: polls > 5) == ExitCode.FATAL
    assert rig.sink.records == {}
    assert rig.broker.committed == {}
    assert rig.consumer.closed


def test_posts_the_model_refuses_are_found_by_bisection_and_dead_lettered() -> None:
    rig = Rig(settings(max_batch_size=8))
    rig.produce(0, 8)
    rig.tagger.rejects = {"p0-2", "p0-5"}
    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK
    assert sorted(rig.sink.records) == [f"p0-{i}" for i in (0, 1, 3, 4, 6, 7)]
    assert sorted((reason, message.value) for reason, message in rig.dead_letters.acked) == [
        ("rejected_by_model", post_json("p0-2")),
        ("rejected_by_model", post_json("p0-5")),
    ]
    assert rig.broker.committed == {P0: 8}


def test_a_model_that_refuses_everything_trips_the_dead_letter_limit() -> None:
    rig = Rig(settings(max_batch_size=4))
    rig.produce(0, 12)
    rig.tagger.fail_with, rig.tagger.fail_times = InferenceRejected("wrong shapes (test)"), 10_000
    assert rig.run_until(lambda polls: polls > 5) == ExitCode.DEAD_LETTER_LIMIT
    assert rig.sink.records == {}
    assert rig.broker.committed.get(P0, 0) <= 5


def test_untaggable_posts_are_dead_lettered_and_the_batch_goes_on() -> None:
    rig = Rig()
    rig.produce(0, 4)
    rig.tagger.untaggable = {"p0-1"}
    assert rig.run_until(lambda polls: polls > 2) == ExitCode.OK
    assert sorted(rig.sink.records) == ["p0-0", "p0-2", "p0-3"]
    assert [reason for reason, _ in rig.dead_letters.acked] == ["undecodable_image"]
    assert rig.broker.committed == {P0: 4}


def test_the_dead_letter_limit_stops_the_worker_before_sending_the_failing_message() -> None:
    rig = Rig()
    for index in range(8):
        rig.broker.produce(TOPIC, 0, f"bad {index}".encode())
    assert rig.run_until(lambda polls: polls > 3) == ExitCode.DEAD_LETTER_LIMIT
    assert len(rig.dead_letters.sent) == 4  # the 5th consecutive failure trips the limit, unsent
    assert rig.broker.committed.get(P0, 0) <= 4


def test_a_revoked_partition_is_dropped_and_a_returning_one_is_rewound() -> None:
    executor = ManualExecutor()
    rig = Rig(executor=executor)
    rig.produce(0, 4)
    rig.produce(1, 4)
    runner = rig.runner
    runner.start()
    runner.step()  # both partitions' batches are running
    rig.consumer.rebalance({P1})
    runner.step()  # P0 revoked: its running batch is left uncommitted
    executor.run_all()
    runner.step()
    assert rig.broker.committed == {P1: 4}
    rig.consumer.rebalance({P0, P1})
    runner.step()  # P0 back: rewound to its first message not done, consumed again from there
    for _ in range(3):
        executor.run_all()
        runner.step()
    assert rig.broker.committed == {P0: 4, P1: 4}
    assert sorted(rig.sink.records) == sorted([f"p0-{i}" for i in range(4)] + [f"p1-{i}" for i in range(4)])


def test_shutdown_sends_buffered_posts_and_commits_them() -> None:
    rig = Rig(settings(max_wait_ms=60_000, max_batch_size=100))
    rig.produce(0, 3)
    assert rig.run_until(lambda polls: polls > 1) == ExitCode.OK
    assert sorted(rig.sink.records) == ["p0-0", "p0-1", "p0-2"]
    assert rig.broker.committed == {P0: 3}


def test_a_failed_commit_is_counted_and_retried_on_the_next_step() -> None:
    rig = Rig()
    rig.produce(0, 2)
    rig.consumer.commit_error = KafkaTimeoutError("coordinator away (test)")
    runner = rig.runner
    runner.start()
    runner.step()
    assert rig.broker.committed == {}
    assert rig.metric('bga_mner_errors_total{stage="commit"} 1.0')
    rig.consumer.commit_error = None
    runner.step()
    assert rig.broker.committed == {P0: 2}


def test_an_unreachable_broker_is_waited_out_not_a_crash() -> None:
    """kafka-python raises from poll() when the coordinator or the metadata cannot be reached."""
    rig = Rig()
    rig.produce(0, 3)
    rig.consumer.poll_errors = [KafkaConnectionError("socket disconnected (test)") for _ in range(5)]
    assert rig.run_until(lambda polls: polls > 8) == ExitCode.OK
    assert rig.broker.committed == {P0: 3}
    assert rig.metric('bga_mner_errors_total{stage="poll"} 5.0')


def test_the_rebalance_listener_never_touches_the_consumer() -> None:
    """kafka-python calls the listener on its IO thread: it may only queue, never call the consumer."""
    rig = Rig(settings(max_batch_size=1, max_in_flight_batches=1), ManualExecutor())
    rig.produce(0, 3)
    runner = rig.runner
    runner.start()
    runner.step()  # backlogged: partitions paused
    owner = threading.get_ident()
    touched: list[str] = []
    for name in ("pause", "resume", "seek", "commit", "assignment", "paused", "position"):
        original = getattr(rig.consumer, name)

        def guard(*args: object, _name: str = name, _original: Callable[..., object] = original) -> object:
            if threading.get_ident() != owner:
                touched.append(_name)
            return _original(*args)

        setattr(rig.consumer, name, guard)
    io_thread = threading.Thread(target=runner.listener.on_partitions_assigned, args=({P1},))
    io_thread.start()
    io_thread.join()
    assert touched == []
    rig.broker.produce(TOPIC, 1, post_json("late"))
    rig.consumer.rebalance({P0, P1})
    runner.step()  # the loop applies the assignment, on its own thread: P1 is paused too
    assert P1 in rig.consumer.paused()


@pytest.mark.parametrize("partitions", [1, 3])
def test_lag_gauges_of_revoked_partitions_are_removed(partitions: int) -> None:
    rig = Rig()
    for partition in range(partitions):
        rig.produce(partition, 2)
    runner = rig.runner
    runner.start()
    runner.step()
    assert rig.metric(f'bga_mner_consumer_lag{{partition="0",topic="{TOPIC}"}}')
    rig.consumer.rebalance(set())
    runner.step()
    assert "bga_mner_consumer_lag{" not in rig.metrics.exposition().decode()
