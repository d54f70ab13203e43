"""GPU check of the lean serving graph: fp32 vs fp16/bf16 entities, posts/s and achieved TFLOP/s.

Two steps, because the GPU machine has PyTorch and ONNX Runtime but not this project's training
dependencies (transformers, tokenizers) and takes at most 64 MiB of files:

    # here (CPU): the lean module (fp16 weights, ~55 MB), the encoded test windows, labels and CRF
    .venv/bin/python benchmarks/gpu.py prepare --checkpoint runs/<run> [--out .bench/gpu_bundle.pt]
    # on the GPU machine (within ~3 minutes; exits 0 with "skipped" when there is no CUDA GPU)
    python benchmarks/gpu.py run [--bundle .bench/gpu_bundle.pt] [--budget-s 150]

``run`` tags the test set (the windows the serving tagger would send, grouped by length) in fp32 (TF32
off), fp16 autocast and bf16 autocast, decodes with the checkpoint's CRF, and reports the share of
sentences with identical tags and F1 per precision (the lean graph keeps its scorers and the rank
selection in fp32 under autocast); then it sweeps batch x sequence and reports posts/s and achieved
TFLOP/s (matmul FLOPs counted by ``torch.utils.flop_counter``) against the device's dense peak.
Results go to benchmarks/results/gpu.json. The weights are stored in fp16, so fp32 runs compute in
fp32 on fp16-rounded weights: the comparison is of compute precision, not of weight rounding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUNDLE = ROOT / ".bench" / "gpu_bundle.pt"
RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
MAX_BUNDLE_BYTES = 60 * 2**20  # the GPU machine takes 64 MiB of files per call
# Dense peak TFLOP/s by device name fragment (vendor data sheets, SXM parts): fp16/bf16 tensor cores,
# TF32, and plain fp32.
PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100": {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "A100": {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L4": {"fp16": 121.0, "bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
}


# ---------------------------------------------------------------------------------- decoding (numpy)
def viterbi(emissions: npt.NDArray[np.float32], start: Any, transitions: Any, end: Any) -> list[int]:
    """Best label path of one chain [T, L] (the serving decoder's algorithm, without its dependencies)."""
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


def sentence_tags(
    window_rows: list[npt.NDArray[np.float32]], word_index: list[list[int]], owned: list[tuple[int, int]],
    words: int, labels: list[str], crf: dict[str, Any],
) -> list[str]:  # fmt: skip
    """First-subword emissions of each word from the window that owns it, then Viterbi; words without a
    subword are "O" (as evaluation scores them)."""
    per_word = np.full((words, len(labels)), np.nan, dtype=np.float32)
    for rows, index, (first, last) in zip(window_rows, word_index, owned, strict=True):
        for word in range(first, last):
            position = index[word]
            if position >= 0:
                per_word[word] = rows[position]
    kept = np.flatnonzero(np.isfinite(per_word).all(axis=1))
    tags = ["O"] * words
    for word, label in zip(
        kept, viterbi(per_word[kept], crf["start"], crf["transitions"], crf["end"]), strict=True
    ):
        tags[word] = labels[label]
    return tags


def f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 (percent), lenient BIO spans as seqeval's default mode counts them."""

    def spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
        found, begin, kind = set(), -1, ""
        for i, tag in enumerate([*tags, "O"]):
            prefix, _, label = tag.partition("-")
            if begin >= 0 and (prefix != "I" or label != kind):
                found.add((begin, i, kind))
                begin = -1
            if prefix == "B" or (prefix == "I" and begin < 0):
                begin, kind = i, label
        return found

    tp = fp = fn = 0
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = spans(g), spans(p)
        tp, fp, fn = tp + len(gs & ps), fp + len(ps - gs), fn + len(gs - ps)
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return 100 * 2 * precision * recall / max(1e-12, precision + recall)


# ------------------------------------------------------------------------------------------ prepare
def prepare(args: argparse.Namespace) -> int:
    import torch

    from bga_mner.preprocessing import SubwordEncoder
    from training.checkpoint import load_for_inference
    from training.export.lean import build_lean
    from training.export.precision import read_eval_split

    bundle = load_for_inference(args.checkpoint)
    lean = build_lean(bundle.module).half()
    encoder = SubwordEncoder.from_file(bundle.tokenizer_json, bundle.max_length, bundle.stride)
    test = read_eval_split(str(bundle.card.dataset), "test", args.data_dir) or []
    sentences = []
    for sentence, windows in zip(test, encoder.encode_many([list(s.tokens) for s in test]), strict=True):
        sentences.append(
            {
                "labels": list(sentence.labels),
                "windows": [
                    {
                        "input_ids": w.input_ids,
                        "casing_ids": w.casing_ids,
                        "word_index": w.word_index,
                        "owned": [w.owned_words.start, w.owned_words.stop],
                    }
                    for w in windows
                ],
            }
        )
    crf = {
        "start": bundle.crf.start.tolist(),
        "end": bundle.crf.end.tolist(),
        "transitions": bundle.crf.transitions.tolist(),
    }
    payload = {
        "module": lean,
        "labels": list(bundle.labels),
        "crf": crf,
        "pad_id": encoder.pad_id,
        "sentences": sentences,
        "source": {
            "checkpoint": args.checkpoint.name,
            "dataset": bundle.card.dataset,
            "test_f1": bundle.card.test_f1,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB, {len(sentences)} test sentences)")
    if size > MAX_BUNDLE_BYTES:
        print(
            f"warning: larger than {MAX_BUNDLE_BYTES / 2**20:.0f} MiB: too large to carry to the GPU machine"
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- run
def _batches(
    sentences: list[dict[str, Any]], pad_id: int, batch: int
) -> list[tuple[list[tuple[int, int]], dict[str, npt.NDArray[np.int64]]]]:
    """(sentence, window) keys and padded inputs, windows sorted by length (the tagger's bucketing)."""
    keys = [(s, w) for s, sentence in enumerate(sentences) for w in range(len(sentence["windows"]))]
    keys.sort(key=lambda k: len(sentences[k[0]]["windows"][k[1]]["input_ids"]))
    out = []
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        length = max(8, max(len(sentences[s]["windows"][w]["input_ids"]) for s, w in chunk))
        ids = np.full((len(chunk), length), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), length), dtype=np.int64)
        casing = np.zeros((len(chunk), length), dtype=np.int64)
        for row, (s, w) in enumerate(chunk):
            window = sentences[s]["windows"][w]
            n = len(window["input_ids"])
            ids[row, :n], mask[row, :n], casing[row, :n] = window["input_ids"], 1, window["casing_ids"]
        out.append((chunk, {"input_ids": ids, "attention_mask": mask, "casing_ids": casing}))
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine: skipped (nothing measured, nothing written)")
        return 0
    began = time.monotonic()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    payload = torch.load(args.bundle, map_location="cpu", weights_only=False)
    device = torch.device(args.device)
    module = payload["module"].float().to(device).eval()
    sentences, labels, crf = payload["sentences"], payload["labels"], payload["crf"]
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (code-path check only)"
    peak = next((p for key, p in PEAKS.items() if key in name), None)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = _batches(sentences, payload["pad_id"], args.batch_size)
    precisions: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}

    def forward(inputs: dict[str, Any], dtype: torch.dtype | None) -> torch.Tensor:
        tensors = [inputs[k] for k in ("input_ids", "attention_mask", "casing_ids")]
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None),
        ):
            return module(*tensors).float()  # type: ignore[no-any-return]

    on_device = [
        (keys, {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}) for keys, inputs in batches
    ]
    results: dict[str, Any] = {"device": name, "peak_tflops": peak, "precisions": {}}
    tags: dict[str, list[list[str]]] = {}
    gold = [s["labels"] for s in sentences]
    for precision, dtype in precisions.items():
        for _, inputs in on_device[:3]:  # warm-up
            forward(inputs, dtype)
        synchronize()
        timings, rows = [], {}
        for _ in range(args.repeats):
            synchronize()
            t0 = time.perf_counter()
            outputs = [(keys, forward(inputs, dtype)) for keys, inputs in on_device]
            synchronize()
            timings.append(time.perf_counter() - t0)
        for keys, emissions in outputs:
            host = emissions.cpu().numpy()
            for row, key in enumerate(keys):
                rows[key] = host[row]
        predicted = []
        for s, sentence in enumerate(sentences):
            windows = sentence["windows"]
            predicted.append(
                sentence_tags(
                    [rows[(s, w)] for w in range(len(windows))],
                    [window["word_index"] for window in windows],
                    [tuple(window["owned"]) for window in windows],
                    len(sentence["labels"]),
                    labels,
                    crf,
                )
            )
        tags[precision] = predicted
        seconds = statistics.median(timings)
        results["precisions"][precision] = {
            "f1": f1(gold, predicted),
            "posts_per_s": len(sentences) / seconds,
            "identical_tags_vs_fp32": sum(a == b for a, b in zip(predicted, tags["fp32"], strict=True))
            / len(sentences),
            "finite": bool(all(np.isfinite(e.cpu().numpy()).all() for _, e in outputs)),
        }
        print(
            f"{precision}: F1 {results['precisions'][precision]['f1']:.2f}, "
            f"{len(sentences) / seconds:.0f} posts/s, "
            f"identical tags vs fp32 {100 * results['precisions'][precision]['identical_tags_vs_fp32']:.1f}%"
        )
    from torch.utils.flop_counter import FlopCounterMode

    sweep = []
    for precision in ("fp16", "bf16", "fp32"):
        for batch in args.sweep_batches:
            for length in args.sweep_lengths:
                if time.monotonic() - began > args.budget_s:
                    break
                ids = torch.randint(1000, 20000, (batch, length), device=device)
                mask = torch.ones_like(ids)
                casing = torch.randint(1, 5, (batch, length), device=device)
                inputs = {"input_ids": ids, "attention_mask": mask, "casing_ids": casing}
                with FlopCounterMode(display=False) as counter:
                    forward(inputs, precisions[precision])
                flops = counter.get_total_flops()
                for _ in range(3):
                    forward(inputs, precisions[precision])
                synchronize()
                t0 = time.perf_counter()
                for _ in range(args.sweep_iterations):
                    forward(inputs, precisions[precision])
                synchronize()
                seconds = (time.perf_counter() - t0) / args.sweep_iterations
                tflops = flops / seconds / 1e12
                sweep.append({
                    "precision": precision, "batch": batch, "sequence": length, "ms": seconds * 1000,
                    "windows_per_s": batch / seconds, "tflops": tflops,
                    "share_of_peak": tflops / peak[precision] if peak else None,
                })  # fmt: skip
                print(
                    f"{precision} batch {batch:4d} x seq {length:4d}: {seconds * 1000:7.2f} ms, "
                    f"{batch / seconds:9.0f} windows/s, {tflops:6.1f} TFLOP/s"
                )
    results["sweep"] = sweep
    results["seconds"] = time.monotonic() - began
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["source"] = payload["source"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"done in {results['seconds']:.0f} s; results in {args.out.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="bundle the lean module and the test windows (CPU machine)")
    prep.add_argument("--checkpoint", type=Path, required=True)
    prep.add_argument("--data-dir", type=Path, default=None)
    prep.add_argument("--out", type=Path, default=BUNDLE)
    go = commands.add_parser("run", help="measure on the GPU (skips without one)")
    go.add_argument("--bundle", type=Path, default=BUNDLE)
    go.add_argument("--batch-size", type=int, default=64)
    go.add_argument("--repeats", type=int, default=3)
    go.add_argument("--sweep-batches", type=int, nargs="+", default=[1, 8, 32, 128, 512])
    go.add_argument("--sweep-lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    go.add_argument("--sweep-iterations", type=int, default=20)
    go.add_argument("--budget-s", type=float, default=150.0, help="stop the sweep after this long")
    go.add_argument("--out", type=Path, default=RESULTS)
    go.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a code-path check only")
    args = parser.parse_args(argv)
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
