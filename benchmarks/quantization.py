"""int8 dynamic quantisation vs fp32 ONNX on CPU: F1 cost and speed gain, measured side by side.

Both graphs come from the same checkpoint in one run and are fed the same windows in the same batches
(gold tokens of the Twitter-2015/2017 dev or test split, encoded by the shared SubwordEncoder), so the
ratios compare the graphs and nothing else. F1 is entity-level micro F1 in percent from the project's
scorer (seqeval, lenient), CRF-decoded with the checkpoint's transitions through the serving decoder.

    .venv/bin/python benchmarks/quantization.py --checkpoint runs/<run> [--split test] [--limit 500]
        [--datasets twitter2017] [--merge]

Writes benchmarks/results/quantization.json (and prints the same numbers). ``--merge`` keeps the results of
other datasets already in that file when they were measured on the same checkpoint, so a long
cross-dataset run can be added later instead of repeating the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bga_mner.inference.onnx_local import OnnxBackend  # noqa: E402
from bga_mner.paths import data_dir  # noqa: E402
from bga_mner.preprocessing import EncodedWindow, SubwordEncoder, pad_batch  # noqa: E402
from training.export.served_f1 import decode_tags  # noqa: E402  (the export's own served-F1 scoring)

RESULTS = ROOT / "benchmarks" / "results" / "quantization.json"
EmissionsFn = Callable[[Mapping[str, npt.NDArray[Any]]], npt.NDArray[Any]]
"""A padded batch (``pad_batch`` output) -> emissions ``[B, S, L]``: the worker's ``OnnxBackend.infer``."""


def run_pass(
    emissions_fn: EmissionsFn, batches: list[list[int]], flat: list[EncodedWindow], pad_id: int
) -> tuple[list[npt.NDArray[np.float32]], float]:
    """Emissions per window (padding cut) and the wall time of one pass over all batches."""
    outputs: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(flat)
    began = time.perf_counter()
    for batch in batches:
        result = emissions_fn(pad_batch([flat[i] for i in batch], pad_id))
        for row, index in enumerate(batch):
            outputs[index] = result[row, : len(flat[index].input_ids)]
    return outputs, time.perf_counter() - began


def timed_passes(
    graphs: dict[str, EmissionsFn],
    batches: list[list[int]],
    flat: list[EncodedWindow],
    pad_id: int,
    repeats: int,
) -> tuple[dict[str, list[npt.NDArray[np.float32]]], dict[str, list[float]]]:
    """One untimed warm-up pass per graph, then ``repeats`` rounds that alternate the graphs, so load from
    other processes on a shared machine hits both alike; the median pass is what gets reported."""
    outputs = {name: run_pass(fn, batches, flat, pad_id)[0] for name, fn in graphs.items()}
    timings: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(repeats):
        for name, fn in graphs.items():
            timings[name].append(run_pass(fn, batches, flat, pad_id)[1])
    return outputs, timings


def length_buckets(flat: Sequence[EncodedWindow], batch_size: int) -> list[list[int]]:
    """Sort by length before batching, as the worker does, so padding does not dominate the timing."""
    order = sorted(range(len(flat)), key=lambda i: len(flat[i].input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.checkpoint import load_for_inference
    from training.data.conll import read_split
    from training.evaluation.scores import score_tags
    from training.export.onnx_export import export_onnx
    from training.export.quantize import quantize_int8

    torch.set_num_threads(args.threads)
    bundle = load_for_inference(args.checkpoint)
    encoder = SubwordEncoder.from_file(bundle.tokenizer_json, bundle.max_length, bundle.stride)
    root = data_dir() if args.data_dir is None else args.data_dir
    if root is None:
        raise SystemExit("no data: set BGA_DATA_DIR or pass --data-dir")
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path = export_onnx(bundle.module, Path(scratch) / "model.onnx")
        int8_path = quantize_int8(fp32_path, Path(scratch) / "model.int8.onnx")
        sizes = {"fp32": fp32_path.stat().st_size, "int8": int8_path.stat().st_size}
        graphs: dict[str, EmissionsFn] = {
            "fp32": OnnxBackend(fp32_path, args.threads).infer,
            "int8": OnnxBackend(int8_path, args.threads).infer,
        }
        results: dict[str, Any] = {}
        for dataset in args.datasets:
            sentences = read_split(root, dataset, args.split)[: args.limit]
            windows = encoder.encode_many([s.tokens for s in sentences])
            flat = [w for post in windows for w in post]
            batches = length_buckets(flat, args.batch_size)
            gold = [list(s.labels) for s in sentences]
            per_graph: dict[str, Any] = {}
            all_outputs, all_timings = timed_passes(graphs, batches, flat, encoder.pad_id, args.repeats)
            for name in graphs:
                outputs, timings = all_outputs[name], all_timings[name]
                predicted, cursor = [], 0
                for post in windows:
                    predicted.append(
                        decode_tags(post, outputs[cursor : cursor + len(post)], bundle.labels, bundle.crf)
                    )
                    cursor += len(post)
                scores = score_tags(gold, predicted)
                seconds = statistics.median(timings)
                per_graph[name] = {
                    "f1": scores.f1,
                    "precision": scores.precision,
                    "recall": scores.recall,
                    "seconds_median": seconds,
                    "seconds_all": timings,
                    "sentences_per_second": len(sentences) / seconds,
                    "tags": predicted,
                }
            agreement = sum(
                a == b for a, b in zip(per_graph["fp32"]["tags"], per_graph["int8"]["tags"], strict=True)
            )
            for entry in per_graph.values():
                del entry["tags"]
            results[dataset] = {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": " ".join(
                    [
                        "benchmarks/quantization.py",
                        *(f"<{Path(a).name}>" if Path(a).is_absolute() else a for a in sys.argv[1:]),
                    ]
                ),
                "split": args.split,
                "sentences": len(sentences),
                "windows": len(flat),
                **per_graph,
                "f1_delta_int8_minus_fp32": per_graph["int8"]["f1"] - per_graph["fp32"]["f1"],
                "speedup_int8_over_fp32": per_graph["fp32"]["seconds_median"]
                / per_graph["int8"]["seconds_median"],
                "sentences_with_identical_tags": agreement / max(1, len(sentences)),
            }
    return {
        "checkpoint": args.checkpoint.name,  # the run's name, never a machine path
        "card": {
            "backbone": Path(str(bundle.card.backbone)).name,
            "dataset": bundle.card.dataset,
            "dev_f1": bundle.card.dev_f1,
            "test_f1": bundle.card.test_f1,
        },
        "model_bytes": sizes,
        "size_ratio_int8_over_fp32": sizes["int8"] / sizes["fp32"],
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (checkpoint.pt)")
    parser.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences per dataset")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per graph after a warm-up")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", action="store_true", help="keep other datasets' results of this checkpoint"
    )
    args = parser.parse_args(argv)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else None
    if previous is not None and previous.get("checkpoint") != args.checkpoint.name:
        parser.error(
            f"--merge: {args.out} was measured on {previous.get('checkpoint')}, not {args.checkpoint}"
        )
    report = evaluate(args)
    if previous is not None:
        report["results"] = {**previous.get("results", {}), **report["results"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{'dataset':<12}{'split':<6}{'F1 fp32':>9}{'F1 int8':>9}{'ΔF1':>8}"
        f"{'sent/s fp32':>13}{'sent/s int8':>13}{'speed-up':>10}"
    )
    for dataset, r in report["results"].items():
        print(
            f"{dataset:<12}{r['split']:<6}{r['fp32']['f1']:>9.2f}{r['int8']['f1']:>9.2f}"
            f"{r['f1_delta_int8_minus_fp32']:>+8.2f}{r['fp32']['sentences_per_second']:>13.1f}"
            f"{r['int8']['sentences_per_second']:>13.1f}{r['speedup_int8_over_fp32']:>9.2f}x"
        )
    print(f"model size int8/fp32: {report['size_ratio_int8_over_fp32']:.2f}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
