"""Decoding throughput: one ``decode_words`` call per post vs one ``decode_batch`` call per batch.

At GPU speeds the model is no longer the worker's bottleneck; per-post numpy decoding (Viterbi and
forward-backward over ~22 words, a few dozen tiny numpy calls per word) is. This measures both ways
on the same synthetic posts, CRF and batches, side by side in one run, and checks they agree:

    .venv/bin/python benchmarks/decoding.py [--posts 2000] [--batch-sizes 32 256 2000] [--repeats 5]

Batch size 32 is the worker's default micro-batch (``batching.max_batch_size``); larger batches
show what a bigger micro-batch would buy.

Posts are tweet-like: 5..40 words, about one entity per post (gold BIO tags over 9 labels, emissions
= noise + a margin on the gold label, the way a trained model's look), a few words without subwords
(NaN rows, which both paths leave out of the chain), and a CRF that punishes invalid BIO transitions.
Throughput is the best of ``--repeats`` runs (the machine is shared; the best run has least noise).
Writes benchmarks/results/decoding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bga_mner.decoding import CRFParams, Entity, decode_batch, decode_words, split_tag  # noqa: E402
from bga_mner.preprocessing import Word  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "decoding.json"
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


@dataclass(frozen=True)
class SyntheticPost:
    text: str
    words: list[Word]
    emissions: npt.NDArray[np.float32]


def bio_crf(rng: np.random.Generator) -> CRFParams:
    """Random scores, but invalid BIO moves (``O -> I-X``, ``B-X -> I-Y``) strongly penalised."""
    size = len(LABELS)
    transitions = rng.normal(scale=0.5, size=(size, size))
    start = rng.normal(scale=0.5, size=size)
    for j, label in enumerate(LABELS):
        prefix, entity_type = split_tag(label)
        if prefix != "I":
            continue
        start[j] -= 8.0
        for i, previous in enumerate(LABELS):
            if split_tag(previous)[1] != entity_type:
                transitions[i, j] -= 8.0
    return CRFParams(start, rng.normal(scale=0.5, size=size), transitions)


def synthetic_posts(count: int, rng: np.random.Generator) -> list[SyntheticPost]:
    posts = []
    types = ["PER", "LOC", "ORG", "MISC"]
    for _ in range(count):
        n = int(rng.integers(5, 41))
        tags = ["O"] * n
        position = 0
        while position < n:
            if rng.random() < 0.05:
                entity_type, span = types[int(rng.integers(4))], int(rng.integers(1, 4))
                for k in range(position, min(n, position + span)):
                    tags[k] = ("B-" if k == position else "I-") + entity_type
                position += span
            position += 1
        emissions = rng.normal(scale=1.0, size=(n, len(LABELS))).astype(np.float32)
        emissions[np.arange(n), [LABELS.index(tag) for tag in tags]] += 5.0
        emissions[rng.random(n) < 0.02] = np.nan  # words without subwords
        text = " ".join(f"w{k}" for k in range(n))
        words, offset = [], 0
        for k in range(n):
            words.append(Word(f"w{k}", offset, offset + len(f"w{k}")))
            offset += len(f"w{k}") + 1
        posts.append(SyntheticPost(text, words, emissions))
    return posts


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[32, 256, 2000], help="posts per decode_batch call"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    crf = bio_crf(rng)
    posts = synthetic_posts(args.posts, rng)

    def per_post() -> list[list[Entity]]:
        return [decode_words(p.text, p.words, p.emissions, LABELS, crf) for p in posts]

    def batched(size: int) -> list[list[Entity]]:
        return [
            entities
            for i in range(0, len(posts), size)
            for entities in decode_batch(
                [p.text for p in posts[i : i + size]],
                [p.words for p in posts[i : i + size]],
                [p.emissions for p in posts[i : i + size]],
                LABELS,
                crf,
            )
        ]

    found = per_post()
    for size in args.batch_sizes:
        if batched(size) != found:
            raise SystemExit(f"decode_batch ({size} posts a call) and decode_words disagree")
    loop_s = best_seconds(per_post, args.repeats)
    batch_s = {size: best_seconds(partial(batched, size), args.repeats) for size in args.batch_sizes}
    result: dict[str, Any] = {
        "benchmark": "CRF decoding (Viterbi + marginals + entities), per-post loop vs batched, numpy CPU",
        "command": " ".join(["python benchmarks/decoding.py", *(sys.argv[1:] if argv is None else argv)]),
        "posts": len(posts),
        "labels": len(LABELS),
        "mean_words": round(float(np.mean([len(p.words) for p in posts])), 2),
        "entities_per_post": round(sum(len(e) for e in found) / len(posts), 3),
        "repeats": args.repeats,
        "per_post_loop": {
            "posts_per_s": round(len(posts) / loop_s, 1),
            "us_per_post": round(loop_s / len(posts) * 1e6, 1),
        },
        "batched": {
            str(size): {
                "posts_per_s": round(len(posts) / seconds, 1),
                "us_per_post": round(seconds / len(posts) * 1e6, 1),
                "speedup_over_loop": round(loop_s / seconds, 2),
            }
            for size, seconds in batch_s.items()
        },
        "identical_results": True,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
    }
    words, entities = result["mean_words"], result["entities_per_post"]
    print(f"{len(posts)} posts, {words} words and {entities} entities per post; identical entities")
    print(f"per-post loop:        {result['per_post_loop']['posts_per_s']:>10,.0f} posts/s")
    for size, row in result["batched"].items():
        print(
            f"batched ({size:>5} a call): {row['posts_per_s']:>10,.0f} posts/s  {row['speedup_over_loop']}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
