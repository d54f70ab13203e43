"""One pipeline benchmark: the peer (spaCy), `bga-mner tag`, Triton alone and the worker end to end.

Every system tags the same posts (Twitter-2017 test when the data is present, else the shipped
sample; repeated to ``--posts``), in one run, alternating the systems round by round (the order
rotates each round) so that load from other processes on a shared machine hits all of them alike;
a warm-up round is not recorded, then ``--repeats`` rounds are, and medians are reported.

    .venv/bin/python benchmarks/pipeline.py --checkpoint runs/demo/checkpoint [--posts 2892] [--repeats 3]
    .venv/bin/python benchmarks/pipeline.py --model-repository DIR   # an exported python-target repository

- spaCy ``en_core_web_sm`` (tok2vec + ner) runs in its own venv (``.bench/peer-venv``, numpy 2),
  installed on first use (benchmarks/pipeline_bench/peer.py);
- `bga-mner tag` is the real command, a whole process, on the exported repository;
- Triton alone: the worker's requests for these posts (its own Tagger builds them) sent by a plain
  gRPC client at the worker's concurrency (``max_in_flight_batches``) to the local stack's Triton;
- the worker end to end: a fresh `bga-mner worker` per round, posts produced to the local broker,
  timed until every post is in the Redis results stream.

Measures per system: posts/s; CPU seconds per post of every process involved (whole processes; for
the two command-line systems also "steady", with the CPU of a run on no posts subtracted, i.e. without
start-up); p50/p99 latency (Triton alone: per request; worker: per post, produce to Redis); peak RSS;
ratios to spaCy and to Triton alone. Writes benchmarks/results/pipeline.json (no machine paths) and
benchmarks/results/pipeline.png; ``--label`` names the serving variant, ``--merge`` keeps the other
labels already in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from pipeline_bench import peer, report  # noqa: E402
from pipeline_bench.posts import PostSet, load_posts  # noqa: E402
from pipeline_bench.procs import ProcessTree, run_child  # noqa: E402

from worker.settings import BatchingSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
CHART = ROOT / "benchmarks" / "results" / "pipeline.png"
BENCH_DIR = ROOT / ".bench"
MODEL_NAME = "bga_mner"
# The worker's defaults, from its settings (one source): posts per micro-batch, windows per request,
# requests of a batch at once, batches in flight (--in-flight overrides the last).
WORKER_DEFAULTS = BatchingSettings()
WORKER_BATCH = WORKER_DEFAULTS.max_batch_size
REQUEST_SIZE = WORKER_DEFAULTS.request_size
CONCURRENT_REQUESTS = WORKER_DEFAULTS.concurrent_requests
WORKER_IN_FLIGHT = WORKER_DEFAULTS.max_in_flight_batches


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def export_repository(checkpoint: Path, out: Path, threads: int, extra: list[str]) -> Path:
    """`bga-mner export --target python` of the checkpoint, as the demo exports it (batch 32)."""
    if out.exists():
        import shutil

        shutil.rmtree(out)
    argv = [
        sys.executable, "-m", "bga_mner.cli", "export", "--checkpoint", str(checkpoint), "--target", "python",
        "--out", str(out), "--model-name", MODEL_NAME, "--max-batch-size", str(REQUEST_SIZE),
        "--intra-op-threads", str(threads), *extra,
    ]  # fmt: skip
    subprocess.run(argv, check=True, env=_env())
    return out


def _entities(path: Path) -> int:
    return sum(len(json.loads(line)["entities"]) for line in path.read_text(encoding="utf-8").splitlines())


class Bench:
    def __init__(self, args: argparse.Namespace, posts: PostSet, repository: Path, scratch: Path) -> None:
        self.args = args
        self.posts = posts
        self.repository = repository
        self.scratch = scratch
        self.posts_file = posts.write_jsonl(scratch / "posts.jsonl")
        self.empty_file = PostSet("empty", 0, []).write_jsonl(scratch / "empty.jsonl")
        self.startup: dict[str, dict[str, float]] = {}
        self.stack: Any = None
        self.requests: list[Any] = []
        self.entities: dict[str, int] = {}

    # ------------------------------------------------------------------ command-line systems
    def _argv(self, system: str, posts_file: Path) -> list[str]:
        if system == "spacy":
            script = ROOT / "benchmarks" / "pipeline_bench" / "spacy_tag.py"
            return [str(peer.peer_python(BENCH_DIR)), str(script), str(posts_file)]
        argv = [str(Path(sys.executable).parent / "bga-mner"), "tag", str(posts_file)]
        argv += ["--model-repository", str(self.repository), "--model-name", MODEL_NAME]
        if self.args.tag_batch_size is not None:
            argv += ["--batch-size", str(self.args.tag_batch_size)]
        return argv + ([] if self.args.tag_threads is None else ["--threads", str(self.args.tag_threads)])

    def command(self, system: str) -> dict[str, Any]:
        if system not in self.startup:  # the cost of start-up alone: the same command on no posts
            empty = run_child(self._argv(system, self.empty_file), self.scratch / "empty.out", _env())
            self.startup[system] = {"wall_s": empty.wall_s, "cpu_s": empty.cpu_s}
        out = self.scratch / f"{system}.out"
        run = run_child(self._argv(system, self.posts_file), out, _env(), self.scratch / f"{system}.err")
        if run.returncode != 0:
            raise RuntimeError(
                f"{system} exited {run.returncode}: {(self.scratch / f'{system}.err').read_text()[-2000:]}"
            )
        self.entities[system] = _entities(out)
        count = len(self.posts.posts)
        steady = max(0.0, run.cpu_s - self.startup[system]["cpu_s"])
        return {
            "wall_s": run.wall_s,
            "posts_per_s": count / run.wall_s,
            "cpu_s": run.cpu_s,
            "cpu_s_per_post": run.cpu_s / count,
            "cpu_s_per_post_steady": steady / count,
            "peak_rss_mb": run.peak_rss_bytes / 2**20,
        }

    # ------------------------------------------------------------------ served systems
    def start_stack(self) -> None:
        from bga_mner.stack import LocalStack

        state = self.scratch / "stack"
        self.stack = LocalStack(state, ready_timeout=120.0, die_with_parent=True)
        self.stack.up(model_repository=state / "model_repository", model_control="explicit")
        self.stack.load_model(self.repository / MODEL_NAME, MODEL_NAME)

    def triton(self) -> dict[str, Any]:
        from pipeline_bench.triton_alone import send, worker_requests

        if not self.requests:
            self.requests = worker_requests(
                self.repository, MODEL_NAME, self.posts.posts, WORKER_BATCH, REQUEST_SIZE
            )
        tree = ProcessTree(self.stack.state.services["triton"].pid)
        tree.start()
        run = send(
            self.stack.triton_grpc, MODEL_NAME, self.requests, self.args.in_flight, CONCURRENT_REQUESTS
        )
        triton_cpu = tree.stop()
        count = len(self.posts.posts)
        latencies = [s * 1000 for s in run.request_latencies_s]
        return {
            "wall_s": run.wall_s,
            "posts_per_s": count / run.wall_s,
            "cpu_s": run.client_cpu_s + triton_cpu,
            "cpu_s_by_process": {"triton": triton_cpu, "client": run.client_cpu_s},
            "cpu_s_per_post": (run.client_cpu_s + triton_cpu) / count,
            "p50_ms": report.percentile(latencies, 50),
            "p99_ms": report.percentile(latencies, 99),
            "latency_of": "one request (a sub-batch of up to 32 windows)",
            "requests": len(latencies),
            "padding_share": 1 - run.real_tokens / max(1, run.tokens),
            "peak_rss_mb": tree.peak_rss_bytes() / 2**20,
        }

    def worker(self, round_index: int) -> dict[str, Any]:
        from pipeline_bench.worker_e2e import run_worker

        log = self.scratch / f"worker-{round_index}.log"
        extra = {"BGA_BATCHING__MAX_IN_FLIGHT_BATCHES": str(self.args.in_flight)}
        measured = run_worker(self.stack, self.repository, MODEL_NAME, self.posts.posts, log, extra)
        count = len(self.posts.posts)
        latencies = [s * 1000 for s in measured.latencies_s]
        total = sum(measured.cpu_s.values())
        return {
            "wall_s": measured.wall_s,
            "posts_per_s": count / measured.wall_s,
            "cpu_s": total,
            "cpu_s_by_process": measured.cpu_s,
            "cpu_s_per_post": total / count,
            "p50_ms": report.percentile(latencies, 50),
            "p99_ms": report.percentile(latencies, 99),
            "latency_of": "one post, produce call to its Redis results-stream entry",
            "posts_per_s_steady": measured.steady_posts_per_s(),
            "peak_rss_mb": measured.peak_rss_bytes / 2**20,
        }

    def measure(self, system: str, round_index: int) -> dict[str, Any]:
        if system in ("spacy", "tag"):
            return self.command(system)
        if system == "triton":
            return self.triton()
        return self.worker(round_index)


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "spacy" in systems:
        print(
            "peer environment:",
            peer.ensure_peer_env(BENCH_DIR, BENCH_DIR / "peer-install.log").parent.parent.name,
        )
    posts = load_posts(args.posts)
    with tempfile.TemporaryDirectory(prefix="bga-pipeline-") as scratch_dir:
        scratch = Path(scratch_dir)
        repository = args.model_repository
        if repository is None:
            repository = export_repository(
                args.checkpoint, BENCH_DIR / "model_repository", args.triton_threads, args.export_arg
            )
        bench = Bench(args, posts, repository, scratch)
        if "triton" in systems or "worker" in systems:
            bench.start_stack()
        rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        try:
            for round_index in range(args.warmup + args.repeats):
                order = systems[round_index % len(systems) :] + systems[: round_index % len(systems)]
                recorded = round_index >= args.warmup
                for system in order:
                    began = time.monotonic()
                    result = bench.measure(system, round_index)
                    if recorded:
                        rounds[system].append(result)
                    print(
                        f"round {round_index}{'' if recorded else ' (warm-up)'} {system:<7} "
                        f"{result['posts_per_s']:8.1f} posts/s  "
                        f"{1000 * result['cpu_s_per_post']:6.2f} CPU ms/post"
                        f"  ({time.monotonic() - began:.1f} s)",
                        flush=True,
                    )
        finally:
            if bench.stack is not None:
                bench.stack.down()
        manifest = json.loads(
            max(
                (repository / MODEL_NAME).glob("*/manifest.json"), key=lambda p: int(p.parent.name)
            ).read_text()
        )
    summaries = {s: report.summarise(s, rounds[s], len(posts.posts)) for s in systems}
    report.add_ratios(summaries)
    for system, startup in bench.startup.items():
        summaries[system]["startup"] = startup
    for system, count in bench.entities.items():
        summaries[system]["entities_found"] = count
    extra = manifest.get("card", {}).get("extra", {})
    return {
        "label": args.label,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/pipeline.py", *_portable_argv(sys.argv[1:])]),
        "posts": {"source": posts.source, "distinct": posts.distinct, "count": len(posts.posts)},
        "model": {
            "graph": extra.get("graph", "training"),
            "precision": extra.get("precision"),
            "precision_choice": extra.get("precision_choice"),
            "dataset": extra.get("dataset"),
            "dev_f1": manifest.get("card", {}).get("dev_f1"),
            "test_f1": manifest.get("card", {}).get("test_f1"),
            "max_length": manifest.get("max_length"),
        },
        "settings": {
            "warmup_rounds": args.warmup,
            "repeats": args.repeats,
            "tag_threads": args.tag_threads,
            "tag_batch_size": args.tag_batch_size,
            "triton_intra_op_threads": args.triton_threads,
            "worker_batch_size": WORKER_BATCH,
            "request_size": REQUEST_SIZE,
            "concurrent_requests": CONCURRENT_REQUESTS,
            "worker_in_flight_batches": args.in_flight,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "systems": summaries,
    }


def _portable_argv(argv: list[str]) -> list[str]:
    """The command line without machine paths: paths inside the checkout become relative."""
    portable = []
    for arg in argv:
        path = Path(arg)
        if path.is_absolute():
            try:
                arg = str(path.resolve().relative_to(ROOT))
            except ValueError:
                arg = f"<{path.name}>"
        portable.append(arg)
    return portable


def redraw(out: Path, chart: Path) -> None:
    """The chart again from the results file (e.g. after merging runs), without measuring."""
    runs = json.loads(out.read_text())["runs"]
    latest = list(runs.values())[-1]
    title = f"{latest['posts']['count']} posts ({latest['posts']['source']}); runs: {', '.join(runs)}"
    report.chart({label: run["systems"] for label, run in runs.items()}, chart, title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, default=None, help="export this checkpoint first (python target)"
    )
    source.add_argument(
        "--model-repository", type=Path, default=None, help="an exported python-target repository"
    )
    parser.add_argument(
        "--export-arg", action="append", default=[], help="extra `bga-mner export` argument (repeatable)"
    )
    parser.add_argument(
        "--posts", type=int, default=2892, help="posts per system per round (4 x the 723 test posts)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    parser.add_argument("--systems", default="spacy,tag,triton,worker")
    parser.add_argument(
        "--tag-threads", type=int, default=None, help="`bga-mner tag --threads` (default: its own)"
    )
    parser.add_argument(
        "--tag-batch-size", type=int, default=None, help="`bga-mner tag --batch-size` (default: its own)"
    )
    parser.add_argument(
        "--triton-threads", type=int, default=2, help="python backend INTRA_OP_THREADS (export)"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=WORKER_IN_FLIGHT,
        help="the worker's BGA_BATCHING__MAX_IN_FLIGHT_BATCHES and Triton-alone's client concurrency",
    )
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--merge", action="store_true", help="keep other labels already in --out")
    parser.add_argument("--redraw", action="store_true", help="only redraw the chart from --out")
    args = parser.parse_args(argv)
    if args.redraw:
        redraw(args.out, args.chart)
        return 0
    if args.checkpoint is None and args.model_repository is None:
        default = ROOT / "runs" / "demo" / "checkpoint"
        if not (default / "checkpoint.pt").is_file():
            parser.error("give --checkpoint or --model-repository (no runs/demo/checkpoint: run `make demo`)")
        args.checkpoint = default
    result = run(args)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {}
    runs = {**previous.get("runs", {}), args.label: result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"latest": args.label, "runs": runs}, indent=2) + "\n")
    print()
    print(report.table(result["systems"]))
    worker = result["systems"].get("worker", {})
    if worker.get("posts_per_s_steady"):
        ratio = worker["ratios"].get("posts_per_s_steady_vs_triton")
        print(
            f"worker, once full (10th-90th percentile completions): {worker['posts_per_s_steady']:.1f} "
            "posts/s" + (f" = {ratio:.2f} x Triton alone" if ratio else "")
        )
    title = (
        f"{result['posts']['count']} posts ({result['posts']['source']}); per label (run): median of "
        f"{args.repeats} alternating rounds, {os.cpu_count()} CPUs; latest: {args.label}, "
        f"{result['model']['graph'].split(' ')[0]} graph, {result['model']['precision']}"
    )
    report.chart({label: run["systems"] for label, run in runs.items()}, args.chart, title)
    print(
        f"\nresults: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}; "
        f"chart: {args.chart.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
