"""Redis memory per 100,000 posts, measured through the worker's own ``RedisSink`` on a real redis-server.

Capacity planning needs bytes per post for each kind of key the sink writes (docs/redis.md): the
per-post record, the dedupe marker, the trending buckets and the results stream. Estimates from key
sizes miss Redis's own overheads (hash encodings, the expiry index, allocator size classes), so this
writes synthetic tagged posts with the real sink into an empty redis-server it starts on 127.0.0.1
and reads ``used_memory`` before and after:

    .venv/bin/python benchmarks/redis_capacity.py [--posts 100000] [--rate 1000]

Each mode runs on a flushed server: ``default`` (records on) and ``compact``
(``BGA_REDIS__STORE_RECORDS=false``: markers, trending and the stream only). The difference of the two
totals is what records cost; the stream and the trending keys are measured with ``MEMORY USAGE``; the
markers are the rest of the compact total. The same posts are written in both modes.

Posts are tweet-like: 19-digit snowflake ids, 0-4 entities per post with the shares of the annotated
Twitter-2015 train split (about 1.5 per post; a raw firehose has fewer, so this errs high), entity
names drawn from a Zipf-shaped vocabulary (a few very frequent names, a long tail), ``created_at``
spaced at ``--rate`` posts per second so they fall into the trending buckets a stream at that rate
would fill. Writes benchmarks/results/redis_capacity.json, including the sizing table of
docs/capacity.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bga_mner.decoding import Entity  # noqa: E402
from bga_mner.tagging import TaggedPost  # noqa: E402
from worker.settings import RedisSettings  # noqa: E402
from worker.sinks.redis_sink import RedisSink, SinkRecord  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "redis_capacity.json"
# Shares of posts with 0, 1, 2, 3, 4 entities (annotated Twitter-2015 train split, rounded).
ENTITY_COUNT_WEIGHTS = (0.04, 0.53, 0.30, 0.10, 0.03)
ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")
VOCABULARY = 1_000_000  # distinct entity names the Zipf draw can return (--vocabulary)
GB = 1e9
# The sizing table: ingest rates (posts/s) and retention (record/marker TTL) in days.
RATES = (100, 300, 700, 1000, 3000)
RETENTION_DAYS = (0.5, 1, 2, 7)
TYPICAL_REDIS_GB = 12.0  # a 16 GB managed node with maxmemory at 75 %
LISTPACK_SETTING = "hash-max-listpack-value"  # hash-max-ziplist-value before Redis 7
LISTPACK_VALUE_BYTES = 1024


@dataclass(frozen=True)
class ModeResult:
    used_bytes: int
    keys: int
    stream_bytes: int
    stream_entries: int
    trending_bytes: int
    trending_members: int
    trending_buckets: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server the local stack would use: $BGA_REDIS_SERVER, else the one on PATH."""
    found = os.environ.get("BGA_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise SystemExit("redis-server not found: run scripts/install_redis.sh or set BGA_REDIS_SERVER")
    return found


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], redis.Redis, str]:
    """An empty redis-server without persistence on a free 127.0.0.1 port: (process, client, version)."""
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client: redis.Redis = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)
    version = str(client.info("server")["redis_version"])
    return process, client, version


def entity_names(rng: random.Random, size: int) -> list[str]:
    """A vocabulary of plausible names, 1-3 capitalised words, built once (index = popularity rank)."""
    syllables = ["ka", "ri", "to", "na", "lo", "mi", "se", "ta", "vo", "an", "el", "or", "us", "ie", "ch"]
    names = []
    for _ in range(size):
        words = [
            "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))).capitalize()
            for _ in range(rng.choice((1, 1, 2, 2, 2, 3)))
        ]
        names.append(" ".join(words))
    return names


def zipf_cumulative(size: int) -> list[float]:
    """Cumulative weights of rank r ~ 1/r: the head repeats, the tail is mostly unique."""
    total, cumulative = 0.0, []
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return cumulative


def synthetic_posts(count: int, rate: float, seed: int, vocabulary: int = VOCABULARY) -> Iterator[SinkRecord]:
    """Tagged posts as the worker hands them to the sink, deterministic for a seed."""
    rng = random.Random(seed)
    names = entity_names(rng, vocabulary)
    cumulative = zipf_cumulative(len(names))
    # Recent enough that every bucket is still alive (the sink skips counts of expired buckets), and
    # aligned to a bucket start so the split of posts into buckets does not depend on the clock.
    width = RedisSettings().trending_bucket_seconds
    start = (int(time.time() - count / rate) // width - 1) * width
    first_id = 1_790_000_000_000_000_000
    for i in range(count):
        created = start + i / rate
        entities: list[Entity] = []
        offset = 0
        for _ in range(rng.choices(range(len(ENTITY_COUNT_WEIGHTS)), ENTITY_COUNT_WEIGHTS)[0]):
            text = rng.choices(names, cum_weights=cumulative)[0]
            offset += rng.randint(0, 40)
            entities.append(
                Entity(
                    text, rng.choice(ENTITY_TYPES), offset, offset + len(text), round(rng.uniform(0.5, 1), 6)
                )
            )
            offset += len(text)
        post_id = str(first_id + i * 4096 + rng.randrange(4096))
        yield SinkRecord(
            tagged=TaggedPost(post_id=post_id, entities=entities, model_version="1"),
            topic="posts",
            partition=i % 12,
            offset=100_000_000 + i // 12,
            kafka_timestamp_ms=int(created * 1000) + 40,
            created_at=datetime.fromtimestamp(created, tz=UTC),
        )


def memory_usage(client: redis.Redis, keys: Sequence[bytes]) -> int:
    """Exact ``MEMORY USAGE`` (SAMPLES 0 counts every element) summed over keys."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(size or 0) for size in pipe.execute())


def measure(
    client: redis.Redis, settings: RedisSettings, posts: Sequence[SinkRecord], batch_size: int
) -> ModeResult:
    """Write the posts through the sink on an empty server and account for the memory they take."""
    client.flushall()
    client.script_flush()
    before = int(client.info("memory")["used_memory"])
    sink = RedisSink(client, settings)
    for start in range(0, len(posts), batch_size):
        sink.write_batch(posts[start : start + batch_size])
    after = int(client.info("memory")["used_memory"])
    prefix = settings.key_prefix
    trending = [k for k in client.scan_iter(match=f"{prefix}:trending:*", count=1000)]
    bucket_keys = [k for k in trending if not k.endswith(b":buckets")]
    stream_key = f"{prefix}:results".encode()
    return ModeResult(
        used_bytes=after - before,
        keys=int(client.dbsize()),
        stream_bytes=memory_usage(client, [stream_key]),
        stream_entries=int(client.xlen(stream_key)),
        trending_bytes=memory_usage(client, trending),
        trending_members=sum(int(client.zcard(k)) for k in bucket_keys),
        trending_buckets=len(bucket_keys),
    )


def sizing(per_post: dict[str, float], stream_bytes: float, bucket_s: int) -> list[dict[str, Any]]:
    """GB for each rate x retention, records on and off; trending kept for retention - one bucket."""
    rows = []
    for rate in RATES:
        for days in RETENTION_DAYS:
            retained = rate * days * 86400
            trending_posts = rate * (days * 86400 - bucket_s)
            compact = retained * per_post["marker"] + trending_posts * per_post["trending"] + stream_bytes
            default = compact + retained * per_post["record"]
            listpack = compact + retained * per_post["record_listpack"]
            rows.append(
                {
                    "posts_per_s": rate,
                    "retention_days": days,
                    "default_gb": round(default / GB, 2),
                    "default_listpack_gb": round(listpack / GB, 2),
                    "compact_gb": round(compact / GB, 2),
                    "compact_fits_typical": compact / GB <= TYPICAL_REDIS_GB,
                }
            )
    return rows


def at_worker_defaults(per_post: dict[str, float], stream_bytes: float) -> list[dict[str, Any]]:
    """GB with the worker's default settings: records and markers for record_ttl, trending for its TTL."""
    defaults = RedisSettings()
    rows = []
    for rate in RATES:
        retained = rate * defaults.record_ttl_seconds
        trending = rate * defaults.trending_ttl_seconds * per_post["trending"]
        total = retained * (per_post["record"] + per_post["marker"]) + trending + stream_bytes
        rows.append({"posts_per_s": rate, "gb": round(total / GB, 2)})
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    posts = list(synthetic_posts(args.posts, args.rate, args.seed, args.vocabulary))
    with tempfile.TemporaryDirectory(prefix="bga-redis-capacity-") as workdir:
        process, client, version = start_redis(Path(workdir))
        try:
            settings = RedisSettings(key_prefix="bga", stream_maxlen=args.stream_maxlen)
            default = measure(client, settings, posts, args.batch_size)
            compact_settings = settings.model_copy(update={"store_records": False})
            compact = measure(client, compact_settings, posts, args.batch_size)
            # Redis keeps a hash compact (listpack) only while every value is <= 64 bytes; one entity's
            # JSON is longer, so records fall back to a hash table unless the server allows more.
            client.config_set(LISTPACK_SETTING, LISTPACK_VALUE_BYTES)
            listpack = measure(client, settings, posts, args.batch_size)
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=10)
    count = len(posts)
    marker_bytes = compact.used_bytes - compact.stream_bytes - compact.trending_bytes
    per_post = {
        "record": (default.used_bytes - compact.used_bytes) / count,
        "record_listpack": (listpack.used_bytes - compact.used_bytes) / count,
        "marker": marker_bytes / count,
        "trending": compact.trending_bytes / count,
        "stream_entry": compact.stream_bytes / max(compact.stream_entries, 1),
    }
    stream_full = per_post["stream_entry"] * args.stream_maxlen
    per_100k = {
        name: round(value * 100_000 / 1e6, 2) for name, value in per_post.items() if name != "stream_entry"
    }
    entities = sum(len(r.tagged.entities) for r in posts)
    return {
        "benchmark": "Redis memory per post through worker.sinks.redis_sink.RedisSink on a real redis-server",
        "command": "python benchmarks/redis_capacity.py"
        + ("" if count == 100_000 else f" --posts {count}")
        + ("" if args.rate == 1000 else f" --rate {args.rate:g}")
        + ("" if args.vocabulary == VOCABULARY else f" --vocabulary {args.vocabulary}"),
        "redis_version": version,
        "posts": count,
        "rate_posts_per_s": args.rate,
        "batch_size": args.batch_size,
        "entities_per_post": round(entities / count, 3),
        "vocabulary": args.vocabulary,
        "trending_bucket_s": RedisSettings().trending_bucket_seconds,
        "stream_maxlen": args.stream_maxlen,
        "used_memory_bytes": {
            "default": default.used_bytes,
            "default_listpack": listpack.used_bytes,
            "compact": compact.used_bytes,
        },
        "listpack_setting": f"{LISTPACK_SETTING} {LISTPACK_VALUE_BYTES}",
        "keys": {"default": default.keys, "compact": compact.keys},
        "stream": {"entries": compact.stream_entries, "bytes": compact.stream_bytes},
        "trending": {
            "buckets": compact.trending_buckets,
            "distinct_members": compact.trending_members,
            "bytes": compact.trending_bytes,
        },
        "bytes_per_post": {name: round(value, 1) for name, value in per_post.items()},
        "mb_per_100k_posts": per_100k,
        "stream_full_mb": round(stream_full / 1e6, 1),
        "typical_redis_gb": TYPICAL_REDIS_GB,
        "sizing": sizing(per_post, stream_full, RedisSettings().trending_bucket_seconds),
        "worker_defaults": {
            "record_ttl_seconds": RedisSettings().record_ttl_seconds,
            "trending_ttl_seconds": RedisSettings().trending_ttl_seconds,
            "rows": at_worker_defaults(per_post, stream_full),
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform(terse=True)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="simulated ingest rate, posts/s")
    parser.add_argument("--batch-size", type=int, default=32, help="posts per sink call (worker default)")
    parser.add_argument("--stream-maxlen", type=int, default=RedisSettings().stream_maxlen)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--vocabulary", type=int, default=VOCABULARY, help="distinct entity names")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("bytes_per_post", "mb_per_100k_posts", "trending")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
