"""Where the served graph spends its time: ONNX Runtime's own profiler, by operator type and by module.

Runs the repository's model.onnx with the project's session options over the Twitter-2017 test
windows (length-sorted batches of 32, as the worker sends them) once with profiling on, and sums the
kernel times by operator type (after ONNX Runtime's fusions) and by the module path in the node names
(``/model/encoder/layers.3/...``; nodes that fusions renamed are counted under their operator only).

    .venv/bin/python benchmarks/profile_graph.py --model-repository .bench/model_repository [--threads 1]

Writes benchmarks/results/profile_graph.json and prints the top entries.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402
from pipeline_bench.posts import load_posts  # noqa: E402

from bga_mner.inference.onnx_local import session_options  # noqa: E402
from bga_mner.model_repository import open_repository  # noqa: E402
from bga_mner.preprocessing import pad_batch, split_words  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "profile_graph.json"


def module_of(node: str) -> str | None:
    parts = node.split("/")
    return "/".join(parts[2:4]) if len(parts) > 3 and parts[1] == "model" else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--model-name", default="bga_mner")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    repository = open_repository(args.model_repository, args.model_name, None)
    posts = load_posts(723)
    windows = [
        w
        for p in posts.posts
        for w in repository.encoder.encode_words([x.text for x in split_words(p["text"])])
    ]
    windows.sort(key=lambda w: len(w.input_ids))
    batches = [pad_batch(windows[i : i + 32], repository.encoder.pad_id) for i in range(0, len(windows), 32)]
    with tempfile.TemporaryDirectory() as scratch:
        options = session_options(args.threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(
            str(repository.version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]
        for batch in batches:
            session.run(None, {n: batch[n] for n in names})
        events: list[dict[str, Any]] = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    by_module: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        by_op[event["args"]["op_name"]] += event["dur"]
        module = module_of(event["name"])
        by_module[module or "(fused, renamed)"] += event["dur"]
    total = sum(by_op.values())
    card = repository.manifest.card
    result = {
        "command": "benchmarks/profile_graph.py --model-repository <repository>"
        + f" --threads {args.threads}",
        "model": {"graph": card.extra.get("graph"), "precision": card.extra.get("precision")},
        "windows": len(windows),
        "mean_subwords": sum(len(w.input_ids) for w in windows) / max(1, len(windows)),
        "kernel_ms": total / 1000,
        "share_by_operator": {k: round(v / total, 4) for k, v in by_op.most_common()},
        "share_by_module": {k: round(v / total, 4) for k, v in by_module.most_common()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for title, counter in (("operator", by_op), ("module", by_module)):
        print(f"by {title}:")
        for name, share in [(k, v / total) for k, v in counter.most_common(12)]:
            print(f"  {name:<40} {100 * share:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
