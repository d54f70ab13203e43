"""Run a list of (dataset, variant, seed) trainings one after another and summarise them.

Each run is `bga-mner train` in-process with `configs/<dataset>-<variant><suffix>.yaml`, the
seed set by `runtime.seed`, and any extra `--set` overrides. A run whose `results.json` already
exists is not repeated, so an interrupted sweep continues where it stopped. The summary gives
mean ± sample standard deviation of dev and test F1 per dataset × variant (selection is on dev
inside each run; test is only read, never used to choose anything).

    python scripts/sweep.py --datasets twitter2015 twitter2017 --variants text_crf bga \\
        --seeds 1 2 3 --out runs/sweep --set runtime.device=cuda

Outputs: <out>/<dataset>-<variant><suffix>-seed<seed>/ (one checkpoint directory per run),
<out>/summary.json and <out>/summary.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    parser.add_argument("--variants", nargs="+", default=["text_crf", "bga"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument(
        "--config-suffix", default="", help='e.g. "-wnut16" for configs/<ds>-<variant>-wnut16.yaml'
    )
    parser.add_argument("--configs", type=Path, default=REPO / "configs")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "sweep")
    parser.add_argument("--summary-name", default="summary", help="<out>/<name>.json and .md")
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, each in its own process (a small model leaves a big GPU mostly idle)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="start no new run after this many minutes (runs already started finish)",
    )
    return parser.parse_args(argv)


def run_name(dataset: str, variant: str, suffix: str, seed: int) -> str:
    return f"{dataset}-{variant}{suffix}-seed{seed}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if "results" in run:
            groups.setdefault(f"{run['dataset']}/{run['variant']}", []).append(run)
    summary: dict[str, Any] = {}
    for key, members in sorted(groups.items()):
        entry: dict[str, Any] = {"runs": len(members), "seeds": [m["seed"] for m in members]}
        for split in ("dev", "test"):
            values = [m["results"][split]["f1"] for m in members]
            entry[f"{split}_f1"] = values
            entry[f"{split}_f1_mean"] = statistics.fmean(values)
            entry[f"{split}_f1_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        epoch_times = [m["results"]["mean_train_seconds_per_epoch"] for m in members]
        entry["train_seconds_per_epoch_mean"] = statistics.fmean(t for t in epoch_times if t is not None)
        entry["best_epochs"] = [m["results"]["best_epoch"] for m in members]
        summary[key] = entry
    return summary


def markdown(summary: dict[str, Any], failures: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| dataset / variant | runs | dev F1 (mean ± std) | test F1 (mean ± std) | test F1 per seed "
        "| s / epoch |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for key, entry in summary.items():
        per_seed = ", ".join(
            f"{seed}: {f1:.2f}" for seed, f1 in zip(entry["seeds"], entry["test_f1"], strict=True)
        )
        lines.append(
            f"| {key} | {entry['runs']} | {entry['dev_f1_mean']:.2f} ± {entry['dev_f1_std']:.2f} "
            f"| {entry['test_f1_mean']:.2f} ± {entry['test_f1_std']:.2f} | {per_seed} "
            f"| {entry['train_seconds_per_epoch_mean']:.1f} |"
        )
    for failure in failures:
        lines.append(f"\nFAILED {failure['name']}: {failure['error']}")
    return "\n".join(lines) + "\n"


def run_parallel(args: argparse.Namespace, plan: list[tuple[str, str, int]]) -> None:
    """Each pending run as a child `sweep.py` of one (dataset, variant, seed); logs in <out>/<name>.log."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def launch(item: tuple[str, str, int]) -> int:
        dataset, variant, seed = item
        name = run_name(dataset, variant, args.config_suffix, seed)
        command = [
            sys.executable, __file__, "--datasets", dataset, "--variants", variant, "--seeds", str(seed),
            "--out", str(args.out), "--configs", str(args.configs), f"--config-suffix={args.config_suffix}",
            "--summary-name", f"summary-{name}",
        ]  # fmt: skip
        if args.overrides:
            command += ["--set", *args.overrides]
        with (args.out / f"{name}.log").open("w") as log:
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode

    pending = [
        item
        for item in plan
        if not (args.out / run_name(item[0], item[1], args.config_suffix, item[2]) / "results.json").is_file()
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(launch, pending))
    logging.info("parallel runs finished with exit codes %s", codes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training.config import load_config
    from training.trainer import train

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    # Seed-major order: a sweep cut short still has every dataset x variant at least once.
    plan = [(d, v, s) for s in args.seeds for d in args.datasets for v in args.variants]
    if args.jobs > 1:
        run_parallel(args, plan)
        args.max_minutes = 0.0  # only collect below: a run that failed in parallel is not retried here
    for dataset, variant, seed in plan:
        name = run_name(dataset, variant, args.config_suffix, seed)
        out = args.out / name
        record: dict[str, Any] = {"name": name, "dataset": dataset, "variant": variant, "seed": seed}
        if (out / "results.json").is_file():
            record["results"] = json.loads((out / "results.json").read_text())
            runs.append(record)
            continue
        if args.max_minutes is not None and (time.monotonic() - started) / 60 >= args.max_minutes:
            logging.warning("time budget spent; not starting %s", name)
            failures.append({"name": name, "error": "not run (time budget) or failed (see its log)"})
            continue
        config_path = args.configs / f"{dataset}-{variant}{args.config_suffix}.yaml"
        overrides = [*args.overrides, f"runtime.seed={seed}"]
        run_started = time.monotonic()
        try:
            record["results"] = train(
                load_config(config_path, overrides), out, resume=(out / "last.pt").is_file()
            )
        except Exception as error:  # one broken run must not lose the others
            traceback.print_exc()
            failures.append({"name": name, "error": f"{type(error).__name__}: {error}"})
            continue
        record["wall_seconds"] = time.monotonic() - run_started
        runs.append(record)
        logging.info(
            "%s: dev %.2f test %.2f", name, record["results"]["dev"]["f1"], record["results"]["test"]["f1"]
        )
        # Rewrite the summary after every run so a killed sweep still leaves one.
        write_summary(args, runs, failures, started)
    write_summary(args, runs, failures, started)
    return 1 if failures else 0


def write_summary(
    args: argparse.Namespace, runs: list[dict[str, Any]], failures: list[dict[str, Any]], started: float
) -> None:
    summary = summarise(runs)
    payload = {
        "overrides": args.overrides,
        "config_suffix": args.config_suffix,
        "wall_minutes": (time.monotonic() - started) / 60,
        "groups": summary,
        "runs": [
            {k: v for k, v in run.items() if k != "results"}
            | {"dev_f1": run["results"]["dev"]["f1"], "test_f1": run["results"]["test"]["f1"],
               "best_epoch": run["results"]["best_epoch"], "epochs_run": run["results"]["epochs_run"]}
            for run in runs
        ],
        "failures": failures,
    }  # fmt: skip
    (args.out / f"{args.summary_name}.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    header = f"Sweep `{args.config_suffix or 'base'}` configs, overrides {args.overrides or 'none'}"
    (args.out / f"{args.summary_name}.md").write_text(markdown(summary, failures, header), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
