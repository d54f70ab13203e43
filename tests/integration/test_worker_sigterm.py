"""Acceptance: SIGTERM mid-stream, then a restart, loses no post and counts no entity twice.

The worker runs as its own process (`bga-mner worker`, configured through BGA_* variables only)
under an import hook that refuses torch, so the same run also proves the worker process never
imports torch. Afterwards a worker with a fresh consumer group replays the whole topic: every
post is written again, and the trending counts must not move.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import (
    RunnerThread,
    committed_offsets,
    end_offsets,
    expected_trending,
    make_posts,
    produce_posts,
    serve_tiny_model,
    stack_worker_settings,
    start_worker_process,
    stored_records,
    tag_with_cli,
    trending_counts,
    wait_until,
)
from worker.pipeline.runner import ExitCode
from worker.pipeline.service import start_worker
from worker.sinks.redis_sink import RedisSink, redis_client

pytestmark = pytest.mark.integration

POSTS = 800
GRACE_S = 8.0


def test_sigterm_then_restart_loses_nothing_and_counts_nothing_twice(
    local_stack: LocalStack,
    load_triton_model: Callable[..., str],
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    root, name = serve_tiny_model(load_triton_model, tmp_path / "repository")
    settings = stack_worker_settings(
        local_stack,
        new_topic,
        key_prefix="term",
        partitions=3,
        model=(root, name),
        sections={
            "batching": {"max_batch_size": 8, "max_wait_ms": 20, "max_in_flight_batches": 1},
            "kafka": {"max_poll_records": 50},
        },
    )
    settings = settings.model_copy(update={"shutdown_grace_s": GRACE_S})
    topic = settings.kafka.topics[0]
    posts = make_posts(POSTS, prefix="term")
    ids = [p["id"] for p in posts]
    expected = tag_with_cli(posts, root, name, tmp_path)
    produce_posts(local_stack.kafka_bootstrap, topic, posts)
    end = end_offsets(topic)
    sink = RedisSink(redis_client(settings.redis), settings.redis)

    def committed() -> dict[int, int]:
        return committed_offsets(local_stack.kafka_bootstrap, settings.kafka.group_id, topic)

    log = tmp_path / "worker.log"
    first = start_worker_process(settings, log)
    try:
        wait_until(lambda: stored_records(settings, sink, ids) >= 100, 120, "the first worker to write posts")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=GRACE_S + 20) == ExitCode.OK, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    after_first = committed()
    assert sum(after_first.values()) < sum(end.values()), "stopped after the end: the test proves nothing"
    assert stored_records(settings, sink, ids) < POSTS

    second = start_worker_process(settings, log)
    try:
        wait_until(lambda: committed() == end, 120, "the restarted worker to reach the end of the topic")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=GRACE_S + 20) == ExitCode.OK, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()

    output = log.read_text()
    assert output.count("signal SIGTERM received") == 2
    reports = re.findall(r"TORCH_IMPORT_ATTEMPTS=(\S*) TORCH_MODULES=(\S*)", output)
    assert reports == [("", ""), ("", "")], "the worker process imported (or tried to import) torch"

    records = {post_id: sink.reader.record(post_id) for post_id in ids}
    assert all(records.values()), "lost posts"
    assert all(record is not None and record["entities"] == expected[pid] for pid, record in records.items())
    expected_counts = expected_trending(expected.items())
    assert sum(expected_counts.values()) > POSTS
    assert trending_counts(sink) == expected_counts

    # Replay everything with a new group: records are rewritten, counts must not change.
    replay_settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"group_id": f"{topic}-replay"})}
    )
    service = start_worker(replay_settings, serve_http=False)
    replay = RunnerThread(service.runner)
    try:
        wait_until(
            lambda: committed_offsets(local_stack.kafka_bootstrap, f"{topic}-replay", topic) == end,
            120,
            "the replay to reach the end of the topic",
        )
    finally:
        assert replay.stop() == ExitCode.OK
        service.close()
    assert trending_counts(sink) == expected_counts
