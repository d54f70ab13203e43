"""What the demo streams: the sample posts, benchmark test tweets as text, and deliberately bad messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bga_mner.demo.layout import SAMPLE_POSTS
from bga_mner.demo.training import split_conll_blocks


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    valid_id: str | None  # the post id when the worker should tag it; None for a deliberate dead letter


def sample_posts(path: Path = SAMPLE_POSTS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def twitter_posts(test_file: Path, count: int) -> list[dict[str, Any]]:
    """Benchmark test tweets as posts: gold tokens joined by spaces (the original text is not released)."""
    posts = []
    for n, block in enumerate(split_conll_blocks(test_file.read_text(encoding="utf-8"))[:count]):
        lines = block.splitlines()
        image_id = lines[0][len("IMGID:") :].strip() if lines[0].startswith("IMGID:") else str(n)
        tokens = [line.rpartition("\t")[0] for line in lines if not line.startswith("IMGID:")]
        posts.append({"id": f"twitter2017-test-{image_id}", "text": " ".join(tokens), "lang": "en"})
    return posts


def malformed_messages() -> list[Message]:
    """One message for each parse-time dead-letter reason the worker knows."""
    return [
        Message(b"bad-json", b'{"id": "bad-json", "text": "an unterminated string', None),
        Message(b"bad-schema", json.dumps({"id": "bad-schema", "body": "no text field"}).encode(), None),
        Message(b"bad-oversize", json.dumps({"id": "bad-oversize", "text": "spam " * 2_001}).encode(), None),
    ]


def build_messages(posts: Sequence[dict[str, Any]], bad: Sequence[Message]) -> list[Message]:
    """Valid posts (key = post id, the input contract) with the bad ones spread among them."""
    messages = [
        Message(str(p["id"]).encode(), json.dumps(p, ensure_ascii=False).encode(), str(p["id"]))
        for p in posts
    ]
    step = max(1, len(messages) // (len(bad) + 1))
    for n, message in enumerate(bad, start=1):
        messages.insert(min(len(messages), n * step + n - 1), message)
    return messages
