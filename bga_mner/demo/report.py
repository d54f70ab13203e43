"""Step 6: what the stream produced, read back through the documented Redis key schema and the DLQ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bga_mner.demo.layout import DLQ_TOPIC, KEY_PREFIX
from bga_mner.results import ResultsReader

if TYPE_CHECKING:
    from rich.console import Console


def shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def pick_posts(records: dict[str, dict[str, Any]], posts: Sequence[dict[str, Any]], count: int) -> list[str]:
    """Posts with entities first, from both sources when there are two, in stream order."""
    with_entities = [str(p["id"]) for p in posts if records.get(str(p["id"]), {}).get("entities")]
    sample = [i for i in with_entities if not i.startswith("twitter2017-")]
    tweets = [i for i in with_entities if i.startswith("twitter2017-")]
    first = sample[: count // 2] if tweets else sample[:count]
    return (first + tweets)[:count] if tweets else first


def trending(redis_url: str, count: int = 10) -> list[tuple[str, str, int]]:
    """Entity counts over every bucket the stream touched (the demo's posts span a few minutes at most)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        reader = ResultsReader(client, KEY_PREFIX)
        totals: Counter[tuple[str, str]] = Counter()
        for bucket in reader.buckets():
            for entity_type, text, posts in reader.top_trending(bucket, count=1000):
                totals[(entity_type, text)] += posts
        return [(t, text, n) for (t, text), n in totals.most_common(count)]
    finally:
        client.close()


def read_records(redis_url: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        reader = ResultsReader(client, KEY_PREFIX)
        return {post_id: record for post_id in ids if (record := reader.record(post_id)) is not None}
    finally:
        client.close()


def print_report(
    console: Console,
    posts: Sequence[dict[str, Any]],
    records: dict[str, dict[str, Any]],
    top: Sequence[tuple[str, str, int]],
    letters: Sequence[tuple[str, str, str]],
    show: int,
) -> None:
    from rich.table import Table

    texts = {str(p["id"]): str(p["text"]) for p in posts}
    table = Table(title=f"Entities read back from Redis ({KEY_PREFIX}:post:<id>)", show_lines=True)
    table.add_column("post", no_wrap=True)
    table.add_column("text", max_width=60)
    table.add_column("entities (type, score)")
    for post_id in pick_posts(records, posts, show):
        entities = records[post_id]["entities"]
        shown = "\n".join(f"{e['text']} ({e['type']}, {e['score']:.2f})" for e in entities)
        table.add_row(post_id, shorten(texts[post_id], 120), shown)
    console.print(table)
    tagged = sum(1 for r in records.values() if r["entities"])
    console.print(f"{len(records)} records in Redis, {tagged} with at least one entity")

    trend = Table(title=f"Trending entities ({KEY_PREFIX}:trending:<bucket>, distinct posts)")
    for column in ("type", "entity", "posts"):
        trend.add_column(column)
    for entity_type, text, count in top:
        trend.add_row(entity_type, text, str(count))
    console.print(trend)

    dlq = Table(title=f"Dead-letter topic {DLQ_TOPIC}: {len(letters)} messages")
    for column in ("key", "reason", "detail"):
        dlq.add_column(column)
    for key, reason, detail in letters:
        dlq.add_row(key, reason, shorten(detail, 80))
    console.print(dlq)
