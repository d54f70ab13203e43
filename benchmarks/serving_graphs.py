"""Serving-graph variants of one checkpoint side by side: F1 of the served graph and its CPU cost.

Each step of the cheaper serving path is a graph variant of the same checkpoint, exported as
`bga-mner export` exports it: the training graph (``BGAMNER.emissions_text_only``) and the lean
graph (training/export/lean.py), each fp32 and int8 (dynamic quantisation, per-channel weights;
``-int8-tensor``: one scale per weight tensor). All are fed the same
gold-tokenised windows, length-sorted into batches as the worker batches them, in one process,
alternating the variants pass by pass (warm-up pass first, median of ``--repeats``); F1 is scored
through the serving CRF decoder (training/export/served_f1.py) on dev and test.

    .venv/bin/python benchmarks/serving_graphs.py --checkpoint runs/<run> [--threads 1 2] [--repeats 3]

Writes benchmarks/results/serving_graphs.json: per variant and thread count, sentences/s, CPU ms per
sentence (this process's CPU time over the pass: what ONNX Runtime's threads really burn, spinning
included), dev/test F1, and the share of test sentences tagged exactly as the fp32 training graph.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bga_mner.inference.onnx_local import OnnxBackend  # noqa: E402
from bga_mner.preprocessing import EncodedWindow, SubwordEncoder  # noqa: E402
from training.export.served_f1 import decode_tags, window_emissions  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving_graphs.json"


def export_variants(checkpoint: Path, scratch: Path, variants: Sequence[str]) -> tuple[Any, dict[str, Path]]:
    import torch

    from training.checkpoint import load_for_inference
    from training.export.lean import build_lean
    from training.export.onnx_export import export_onnx
    from training.export.quantize import ffn_output_matmuls, quantize_int8

    torch.set_num_threads(2)
    bundle = load_for_inference(checkpoint)
    graphs = {"training": bundle.module, "lean": build_lean(bundle.module)}
    paths: dict[str, Path] = {}
    for graph, module in graphs.items():
        if not any(v.startswith(graph) for v in variants):
            continue
        fp32 = export_onnx(module, scratch / f"{graph}-fp32.onnx")
        paths[f"{graph}-fp32"] = fp32
        names = {v.split("@")[0] for v in variants}
        if f"{graph}-int8" in names:
            paths[f"{graph}-int8"] = quantize_int8(fp32, scratch / f"{graph}-int8.onnx")
        if f"{graph}-int8-ffn-fp32" in names:  # int8 but the feed-forward outputs (export's 2nd rung)
            paths[f"{graph}-int8-ffn-fp32"] = quantize_int8(
                fp32, scratch / f"{graph}-int8-ffn-fp32.onnx", keep_fp32=ffn_output_matmuls(fp32)
            )
        if f"{graph}-int8-tensor" in names:  # one scale per weight tensor (the former default)
            paths[f"{graph}-int8-tensor"] = quantize_int8(
                fp32, scratch / f"{graph}-int8-tensor.onnx", per_channel=False
            )
    return bundle, {v: paths[v.split("@")[0]] for v in variants}


class DefaultOptionsBackend:
    """The graph in an ONNX Runtime session with its default options (spinning threads, the caller's
    thread count): what `bga-mner tag` and the python backend ran before the options were chosen."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()]

    def infer(self, inputs: Any) -> Any:
        return self._session.run(["emissions"], {n: inputs[n] for n in self._names})[0]


def make_backend(variant: str, path: Path, threads: int) -> Any:
    """``<variant>@ortdefault`` runs with ONNX Runtime's default session options, else the project's."""
    return (
        DefaultOptionsBackend(path, threads)
        if variant.endswith("@ortdefault")
        else OnnxBackend(path, threads)
    )


def timed_pass(backend: Any, flat: list[EncodedWindow], pad_id: int, batch: int) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    outputs = window_emissions(backend.infer, flat, pad_id, batch)
    return outputs, time.perf_counter() - wall, time.process_time() - cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.evaluation.scores import score_tags
    from training.export.precision import read_eval_split

    with tempfile.TemporaryDirectory() as scratch:
        bundle, paths = export_variants(args.checkpoint, Path(scratch), args.variants)
        encoder = SubwordEncoder.from_file(bundle.tokenizer_json, bundle.max_length, bundle.stride)
        dataset = str(bundle.card.dataset)
        splits = {s: read_eval_split(dataset, s, args.data_dir) for s in ("dev", "test")}
        if splits["test"] is None:
            raise SystemExit(f"no {dataset} data: set BGA_DATA_DIR or pass --data-dir")
        results: dict[str, Any] = {}
        reference_tags: list[list[str]] | None = None
        for threads in args.threads:
            backends = {v: make_backend(v, p, threads) for v, p in paths.items()}
            # speed: test split windows, alternating variants
            test = splits["test"] or []
            windows = encoder.encode_many([list(s.tokens) for s in test])
            flat = [w for post in windows for w in post]
            outputs = {
                v: timed_pass(b, flat, encoder.pad_id, args.batch_size)[0] for v, b in backends.items()
            }
            walls: dict[str, list[float]] = {v: [] for v in backends}
            cpus: dict[str, list[float]] = {v: [] for v in backends}
            for _ in range(args.repeats):
                for variant, backend in backends.items():
                    _, wall, cpu = timed_pass(backend, flat, encoder.pad_id, args.batch_size)
                    walls[variant].append(wall)
                    cpus[variant].append(cpu)
            for variant in backends:
                tags, cursor = [], 0
                for post in windows:
                    tags.append(
                        decode_tags(
                            post, outputs[variant][cursor : cursor + len(post)], bundle.labels, bundle.crf
                        )
                    )
                    cursor += len(post)
                if reference_tags is None and variant == args.variants[0]:
                    reference_tags = tags
                entry = results.setdefault(variant, {"by_threads": {}})
                if "test_f1" not in entry:
                    entry["test_f1"] = score_tags([list(s.labels) for s in test], tags).f1
                    if splits["dev"]:
                        dev_windows = encoder.encode_many([list(s.tokens) for s in splits["dev"]])
                        dev_flat = [w for post in dev_windows for w in post]
                        dev_out = window_emissions(
                            backends[variant].infer, dev_flat, encoder.pad_id, args.batch_size
                        )
                        dev_tags, cursor = [], 0
                        for post in dev_windows:
                            dev_tags.append(
                                decode_tags(
                                    post, dev_out[cursor : cursor + len(post)], bundle.labels, bundle.crf
                                )
                            )
                            cursor += len(post)
                        entry["dev_f1"] = score_tags([list(s.labels) for s in splits["dev"]], dev_tags).f1
                    if reference_tags is not None:
                        same = sum(a == b for a, b in zip(reference_tags, tags, strict=True))
                        entry[f"identical_test_tags_vs_{args.variants[0]}"] = same / max(1, len(tags))
                    entry["model_mb"] = paths[variant].stat().st_size / 2**20
                wall, cpu = statistics.median(walls[variant]), statistics.median(cpus[variant])
                entry["by_threads"][str(threads)] = {
                    "sentences_per_s": len(test) / wall,
                    "cpu_ms_per_sentence": 1000 * cpu / len(test),
                    "wall_s_all": walls[variant],
                    "cpu_s_all": cpus[variant],
                }
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [
                "benchmarks/serving_graphs.py",
                *[a if not a.startswith("/") else f"<{Path(a).name}>" for a in sys.argv[1:]],
            ]
        ),
        "checkpoint": {
            "name": args.checkpoint.name,
            "dataset": bundle.card.dataset,
            "epoch": bundle.card.epoch,
            "trainer_dev_f1": bundle.card.dev_f1,
            "trainer_test_f1": bundle.card.test_f1,
        },
        "sentences": {"test": len(splits["test"] or []), "dev": len(splits["dev"] or [])},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "variants": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["training-fp32", "lean-fp32", "training-int8-tensor", "lean-int8-tensor", "lean-int8"],
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{'variant':<26}{'dev F1':>8}{'test F1':>9}{'same tags':>10}{'MB':>7}"
        "  per threads: sent/s, CPU ms/sent"
    )
    for variant, entry in report["variants"].items():
        same = next((v for k, v in entry.items() if k.startswith("identical_test_tags")), None)
        speeds = "  ".join(
            f"{t}t: {r['sentences_per_s']:.0f}/s {r['cpu_ms_per_sentence']:.2f}ms"
            for t, r in entry["by_threads"].items()
        )
        print(
            f"{variant:<26}{entry.get('dev_f1', float('nan')):>8.2f}{entry['test_f1']:>9.2f}"
            f"{(same or 0) * 100:>9.1f}%{entry['model_mb']:>7.1f}  {speeds}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
