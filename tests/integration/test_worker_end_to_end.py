"""Acceptance: the worker against the real broker, Triton (serving the tiny exported model) and Redis.

1. 1,000 posts in give 1,000 per-post records in Redis whose entities equal what `bga-mner tag`
   (the same model repository, run in-process with ONNX Runtime) returns, and the group's
   committed offsets reach the end of the topic.
2. Malformed messages mixed into a batch go to the DLQ with their reasons in headers; the valid
   posts of the same batch are processed.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import (
    RunnerThread,
    committed_offsets,
    end_offsets,
    make_posts,
    produce,
    produce_posts,
    read_topic,
    serve_tiny_model,
    stack_worker_settings,
    tag_with_cli,
    wait_until,
)
from worker.kafka.dead_letter import (
    HEADER_DETAIL,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
)
from worker.pipeline.runner import ExitCode
from worker.pipeline.service import start_worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def served_model(
    local_stack: LocalStack, load_triton_model: Callable[..., str], tmp_path: Path
) -> tuple[Path, str]:
    """A tiny model repository of this test's own, served by the shared Triton under its own name."""
    return serve_tiny_model(load_triton_model, tmp_path / "repository")


@pytest.fixture
def settings_for(
    local_stack: LocalStack, new_topic: Callable[..., str], served_model: tuple[Path, str]
) -> Callable[..., WorkerSettings]:
    def make(partitions: int = 3, **sections: dict[str, Any]) -> WorkerSettings:
        return stack_worker_settings(
            local_stack,
            new_topic,
            key_prefix="e2e",
            partitions=partitions,
            model=served_model,
            sections=sections,
        )

    return make


def test_thousand_posts_match_the_embedded_tagger_and_offsets_reach_the_end(
    settings_for: Callable[..., WorkerSettings], served_model: tuple[Path, str], tmp_path: Path
) -> None:
    settings = settings_for(partitions=3, batching={"max_batch_size": 32, "max_wait_ms": 50})
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    posts = make_posts(1000)
    expected = tag_with_cli(posts, *served_model, tmp_path)
    assert len(expected) == 1000
    assert sum(1 for entities in expected.values() if entities) > 500, "the tiny model should find entities"
    produce_posts(bootstrap, topic, posts)
    assert sum(1 for end in end_offsets(topic).values() if end > 0) >= 2, "keys should spread over partitions"

    service = start_worker(settings)
    worker = RunnerThread(service.runner)
    try:
        wait_until(
            lambda: committed_offsets(bootstrap, settings.kafka.group_id, topic) == end_offsets(topic),
            120,
            "the group's committed offsets to reach the end of the topic",
        )
        assert service.http is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http.port}/readyz", timeout=5) as response:
            assert json.load(response)["ok"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http.port}/metrics", timeout=5) as response:
            exposition = response.read().decode()
        assert f'topic="{topic}"' in exposition
    finally:
        code = worker.stop()
        service.close()
    assert code == ExitCode.OK

    records = {p["id"]: service.sink.reader.record(p["id"]) for p in posts}
    missing = [post_id for post_id, record in records.items() if record is None]
    assert not missing, f"{len(missing)} posts have no record, e.g. {missing[:3]}"
    mismatched = [pid for pid, rec in records.items() if rec is not None and rec["entities"] != expected[pid]]
    assert not mismatched, f"{len(mismatched)} records differ from `bga-mner tag`, e.g. {mismatched[:3]}"
    assert all(rec is not None and rec["topic"] == topic for rec in records.values())
    assert {rec["model_version"] for rec in records.values() if rec is not None} == {"1"}


def test_malformed_messages_are_dead_lettered_and_the_rest_of_the_batch_is_processed(
    settings_for: Callable[..., WorkerSettings], served_model: tuple[Path, str], tmp_path: Path
) -> None:
    settings = settings_for(
        partitions=1,
        batching={"max_batch_size": 64, "max_wait_ms": 300},
        limits={"max_text_chars": 300},
        dlq={"max_consecutive": 10, "window": 50, "max_ratio": 0.9},
    )
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.topics[0]
    valid = make_posts(12, prefix="ok")
    bad: list[tuple[bytes, str]] = [
        (b'{"id": "broken", "text": "unterminated', "invalid_json"),
        (json.dumps({"text": "no id"}).encode(), "schema"),
        (json.dumps({"id": "long", "text": "x" * 301}).encode(), "oversize"),
        (json.dumps({"id": "img", "text": "bad image", "image": {"data": "%%%"}}).encode(), "schema"),
        (b"\xff\xfe not utf-8", "invalid_json"),
    ]
    messages: list[tuple[bytes | None, bytes]] = []
    expected_reasons: dict[int, str] = {}
    for index, post in enumerate(valid):
        messages.append((post["id"].encode(), json.dumps(post, ensure_ascii=False).encode()))
        if index % 2 == 1 and bad:
            value, reason = bad.pop(0)
            expected_reasons[len(messages)] = reason
            messages.append((b"bad", value))
    assert not bad
    produce(bootstrap, topic, messages, partition=0)
    expected = tag_with_cli(valid, *served_model, tmp_path)

    service = start_worker(settings)
    worker = RunnerThread(service.runner)
    try:
        wait_until(
            lambda: committed_offsets(bootstrap, settings.kafka.group_id, topic) == {0: len(messages)},
            60,
            "the committed offset to pass every message, dead-lettered ones included",
        )
    finally:
        code = worker.stop()
        service.close()
    assert code == ExitCode.OK

    dead = read_topic(bootstrap, settings.kafka.dlq_topic, expected=len(expected_reasons))
    assert len(dead) == len(expected_reasons)
    by_offset = {int(dict(r.headers)[HEADER_OFFSET]): r for r in dead}
    assert {o: dict(r.headers)[HEADER_REASON].decode() for o, r in by_offset.items()} == expected_reasons
    for offset, record in by_offset.items():
        headers = dict(record.headers)
        assert headers[HEADER_TOPIC].decode() == topic
        assert headers[HEADER_PARTITION] == b"0"
        assert headers[HEADER_DETAIL]
        assert record.value == messages[offset][1]  # the original bytes, for inspection and replay
        assert record.key == b"bad"

    for post in valid:
        record = service.sink.reader.record(post["id"])
        assert record is not None, post["id"]
        assert record["entities"] == expected[post["id"]]
    assert service.sink.reader.record("img") is None


def test_undecodable_image_is_dead_lettered_with_an_image_model(
    local_stack: LocalStack,
    load_triton_model: Callable[..., str],
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """With an image-aware model, an image that is valid base64 but not an image is the post's fault."""
    model = serve_tiny_model(load_triton_model, tmp_path / "repository", "bga_mner_img", image_size=8)
    settings = stack_worker_settings(
        local_stack,
        new_topic,
        key_prefix="img",
        model=model,
        sections={"batching": {"max_batch_size": 16, "max_wait_ms": 300}},
    )
    topic = settings.kafka.topics[0]
    posts = make_posts(4, prefix="img")
    posts[2]["image"] = {"data": base64.b64encode(b"these bytes are not an image").decode()}
    produce_posts(local_stack.kafka_bootstrap, topic, posts)
    service = start_worker(settings)
    worker = RunnerThread(service.runner)
    try:
        wait_until(
            lambda: committed_offsets(local_stack.kafka_bootstrap, settings.kafka.group_id, topic) == {0: 4},
            60,
            "the committed offset to reach the end",
        )
    finally:
        assert worker.stop() == ExitCode.OK
        service.close()
    dead = read_topic(local_stack.kafka_bootstrap, settings.kafka.dlq_topic, expected=1)
    assert [dict(r.headers)[HEADER_REASON] for r in dead] == [b"undecodable_image"]
    assert [dict(r.headers)[HEADER_OFFSET] for r in dead] == [b"2"]
    assert [service.sink.reader.record(p["id"]) is not None for p in posts] == [True, True, False, True]
