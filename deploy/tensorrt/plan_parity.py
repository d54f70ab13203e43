#!/usr/bin/env python3
"""Plan-vs-ONNX parity, run by build_plan.sh inside the TensorRT container after the plan is built.

The export wrote ``plan_parity.npz`` next to model.onnx: fixed posts as the requests a worker sends a
TensorRT model (sequence buckets), the fp32 ONNX Runtime emissions for each, and the tags they decode
to with the manifest's CRF. Here the freshly built plan runs the same requests (TensorRT Python API
through Polygraphy's runner, both shipped in the NGC TensorRT container) and must give

- emissions within ``--atol`` of the fp32 reference on every real (unpadded) position, and
- identical tags (so identical entities) on at least ``--min-identical`` of the posts (default: all).

The default tolerance, 0.25 absolute on emissions (logits of magnitude ~1-15), allows fp16 rounding
through the encoder; it was chosen without a GPU at hand (none was available when this was written),
so read the printed maximum on the first real build and tighten it. Exit status: 0 parity holds,
1 it does not (build_plan.sh then removes the plan), 2 the check cannot run (missing file or package).
Standalone on purpose: the container has neither this project nor ONNX Runtime.

Usage: plan_parity.py VERSION_DIR [--atol 0.25] [--min-identical 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "casing_ids")


def viterbi(emissions: Any, start: Any, transitions: Any, end: Any) -> list[int]:
    if emissions.shape[0] == 0:
        return []
    start, transitions, end = np.asarray(start), np.asarray(transitions), np.asarray(end)
    score = start + emissions[0]
    back = []
    for step in emissions[1:]:
        total = score[:, None] + transitions + step[None, :]
        back.append(total.argmax(axis=0))
        score = total.max(axis=0)
    best = [int((score + end).argmax())]
    for pointers in reversed(back):
        best.append(int(pointers[best[-1]]))
    return best[::-1]


def post_tags(
    post: dict[str, Any], outputs: dict[int, Any], labels: list[str], crf: dict[str, Any]
) -> list[str]:
    """First-subword emissions of each word from the window that owns it, Viterbi; no subword = "O"."""
    per_word = np.full((post["words"], len(labels)), np.nan, dtype=np.float32)
    for window in post["windows"]:
        rows = outputs[window["request"]][window["row"]]
        first, last = window["owned"]
        for word in range(first, last):
            position = window["word_index"][word]
            if position >= 0:
                per_word[word] = rows[position]
    kept = np.flatnonzero(np.isfinite(per_word).all(axis=1))
    tags = ["O"] * post["words"]
    path = viterbi(per_word[kept], crf["start"], crf["transitions"], crf["end"])
    for word, label in zip(kept, path, strict=True):
        tags[word] = labels[label]
    return tags


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="TensorRT plan vs fp32 ONNX Runtime reference")
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--atol", type=float, default=0.25)
    parser.add_argument("--min-identical", type=float, default=1.0)
    args = parser.parse_args(argv)
    data_file = args.version_dir / "plan_parity.npz"
    plan_file = args.version_dir / "model.plan"
    manifest_file = args.version_dir / "manifest.json"
    for path in (data_file, plan_file, manifest_file):
        if not path.is_file():
            print(
                f"plan_parity: no {path} (export with a version of bga-mner that writes it)", file=sys.stderr
            )
            return 2
    try:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner  # type: ignore[import-not-found]
    except ImportError as error:
        print(f"plan_parity: Polygraphy is missing ({error}); `pip install polygraphy`", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_file.read_text())
    labels, crf = manifest["labels"], manifest["crf"]
    data = np.load(data_file, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    outputs: dict[int, Any] = {}
    worst = 0.0
    with TrtRunner(EngineFromBytes(plan_file.read_bytes())) as runner:
        for request in range(meta["requests"]):
            feed = {name: data[f"{name}_{request}"] for name in INPUTS}
            result = np.asarray(runner.infer(feed)["emissions"], dtype=np.float32)
            reference = data[f"emissions_{request}"]
            real = feed["attention_mask"].astype(bool)
            worst = max(worst, float(np.abs(result[real] - reference[real]).max()))
            outputs[request] = result
    identical = [post_tags(post, outputs, labels, crf) == post["tags"] for post in meta["posts"]]
    share = sum(identical) / max(1, len(identical))
    print(
        f"plan_parity: {meta['requests']} requests (buckets {meta['buckets']}), {len(identical)} posts: "
        f"max |Δ emissions| {worst:.4f} (tolerance {args.atol}), "
        f"identical tags {sum(identical)}/{len(identical)} "
        f"(required {args.min_identical:.0%})"
    )
    if worst > args.atol or share < args.min_identical:
        different = [post["post"] for post, same in zip(meta["posts"], identical, strict=True) if not same]
        print(f"plan_parity: FAILED; posts with other tags: {different}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
