"""Padding and sorting in the worker's Tagger, in-process, on the real exported model.

How the windows of a micro-batch are grouped decides how much of the model's work is padding
(tweets are short, the model's max length is not). On the same posts, model and thread count, in one
run, alternating the modes (warm-up pass, median of ``--repeats``):

- ``max_length``: every sub-batch padded to the manifest's max length (what a static engine needs);
- ``bucketed-32``: what the worker does today: windows of one 32-post micro-batch sorted by length,
  sub-batches of 32 windows padded to their longest;
- ``bucketed-256``: windows sorted across 256 posts, still sub-batches of 32 windows: what a worker
  that sorts across several micro-batches (or a larger micro-batch) would send.

    .venv/bin/python benchmarks/worker_throughput.py --model-repository DIR   # e.g. .bench/model_repository

The repository is a real export (`bga-mner export`, or the one benchmarks/pipeline.py writes to
.bench/model_repository); no stand-in model. Posts: Twitter-2017 test (repeated to ``--posts``) when
the data is present, else the shipped sample. Writes benchmarks/results/worker_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from pipeline_bench.posts import load_posts  # noqa: E402

from bga_mner.inference.onnx_local import OnnxBackend  # noqa: E402
from bga_mner.model_repository import open_repository  # noqa: E402
from bga_mner.posts import Post  # noqa: E402
from bga_mner.tagging import Padding, Tagger  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "worker_throughput.json"
MODES: dict[str, tuple[Padding, int]] = {  # mode -> (padding, posts per tag() call)
    "max_length": ("max_length", 32),
    "bucketed-32": ("bucketed", 32),
    "bucketed-256": ("bucketed", 256),
}


class CountingBackend:
    """Counts model time and padded vs real tokens, to tell model cost from the rest."""

    def __init__(self, inner: OnnxBackend) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.tokens = 0
        self.real_tokens = 0

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        started = time.perf_counter()
        result = self.inner.infer(inputs)
        self.seconds += time.perf_counter() - started
        self.tokens += int(inputs["input_ids"].size)
        self.real_tokens += int(inputs["attention_mask"].sum())
        return result


def one_pass(tagger: Tagger, backend: CountingBackend, posts: list[Post], call: int) -> dict[str, float]:
    backend.seconds, backend.tokens, backend.real_tokens = 0.0, 0, 0
    cpu, wall = time.process_time(), time.perf_counter()
    entities = 0
    for start in range(0, len(posts), call):
        entities += sum(len(t.entities) for t in tagger.tag(posts[start : start + call]))
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "model_seconds": backend.seconds,
        "padding_share": 1 - backend.real_tokens / max(1, backend.tokens),
        "entities": entities,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--model-name", default="bga_mner")
    parser.add_argument("--posts", type=int, default=1446)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    post_set = load_posts(args.posts)
    posts = [Post(id=p["id"], text=p["text"]) for p in post_set.posts]
    repository = open_repository(args.model_repository, args.model_name, None)
    backend = CountingBackend(OnnxBackend(repository.version_dir / "model.onnx", threads=args.threads))
    taggers = {
        mode: Tagger(repository, backend, max_batch_size=32, padding=p) for mode, (p, _) in MODES.items()
    }
    for mode, tagger in taggers.items():  # warm-up
        one_pass(tagger, backend, posts[:256], MODES[mode][1])
    passes: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, tagger in taggers.items():
            passes[mode].append(one_pass(tagger, backend, posts, MODES[mode][1]))
    results: dict[str, Any] = {}
    for mode, runs in passes.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        results[mode] = {
            "seconds": round(seconds, 3),
            "model_seconds": round(statistics.median(r["model_seconds"] for r in runs), 3),
            "posts_per_s": round(len(posts) / seconds, 1),
            "cpu_ms_per_post": round(
                1000 * statistics.median(r["cpu_seconds"] for r in runs) / len(posts), 3
            ),
            "model_share_of_wall": round(
                statistics.median(r["model_seconds"] / r["seconds"] for r in runs), 3
            ),
            "padding_share": round(runs[0]["padding_share"], 3),
            "entities": int(runs[0]["entities"]),
        }
        print(f"{mode:>13}: {results[mode]}", flush=True)
    card = repository.manifest.card
    result = {
        "benchmark": "Tagger padding and sorting, in-process ONNX Runtime (CPU)",
        "command": " ".join(["benchmarks/worker_throughput.py", *sys.argv[1:]]) if argv is None else None,
        "model": {
            "graph": card.extra.get("graph"),
            "precision": card.extra.get("precision"),
            "dataset": card.extra.get("dataset"),
            "max_length": int(repository.manifest.max_length),
        },
        "posts": {"count": len(posts), "source": post_set.source},
        "threads": args.threads,
        "repeats": args.repeats,
        "modes": results,
        "cpu_saving_bucketed256_vs_bucketed32": round(
            1 - results["bucketed-256"]["cpu_ms_per_post"] / results["bucketed-32"]["cpu_ms_per_post"], 3
        ),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.output.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
