"""Tables of finished runs from their `results.json`: mean ± std over seeds, paired differences.

The numbers in docs/results.md come from this module, so every table there names the command that
printed it. A *group* is a name and the run directories of one recipe (one per seed); groups are
compared seed by seed (paired), which removes the part of the run-to-run spread that the seed
shares between recipes (data order, initialisation of the new layers).

    python -m training.report runs DIR...                       # one line per run (the progress log)
    python -m training.report table NAME=DIR,DIR... NAME=...    # dev/test F1 per benchmark, ± std
    python -m training.report paired BASE=DIR,... OTHER=DIR,...  # per-seed differences OTHER - BASE
    python -m training.report types NAME=DIR,...                # mean per-type test F1
    python -m training.report casing NAME=DIR,...               # test F1 on recased copies
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARKS = ("twitter2015", "twitter2017")
SHORT = {"twitter2015": "T15", "twitter2017": "T17"}
TYPES = ("PER", "LOC", "ORG", "MISC")
CASES = ("lower", "upper", "title")


@dataclass(frozen=True)
class Run:
    directory: Path
    results: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.results["seed"])

    def benchmark(self, name: str) -> dict[str, Any] | None:
        """dev/test scores of one benchmark (older results.json: only the primary one)."""
        benchmarks = self.results.get("benchmarks")
        if benchmarks is not None:
            entry: dict[str, Any] | None = benchmarks.get(name)
            return entry
        if self.results["dataset"] == name:
            return {"dev": self.results["dev"], "test": self.results["test"]}
        return None

    def casing_f1(self, name: str, split: str, case: str) -> float | None:
        """F1 on a recased copy: from `results.json` (`runtime.eval_casing`), else from the
        `eval-<dataset>-<split>-<case>.json` that `bga-mner evaluate --case` wrote into the run."""
        entry = self.benchmark(name)
        if entry is not None and "casing" in entry:
            return float(entry["casing"][split][case]["f1"])
        path = self.directory / f"eval-{name}-{split}-{case}.json"
        if path.is_file():
            return float(json.loads(path.read_text(encoding="utf-8"))["f1"])
        return None

    def f1(self, name: str, split: str) -> float | None:
        entry = self.benchmark(name)
        return None if entry is None else float(entry[split]["f1"])


def load_run(directory: Path) -> Run:
    return Run(directory, json.loads((directory / "results.json").read_text(encoding="utf-8")))


def parse_group(text: str) -> tuple[str, list[Run]]:
    name, _, dirs = text.partition("=")
    if not dirs:
        raise SystemExit(f"group {text!r} is not NAME=DIR,DIR...")
    runs = [load_run(Path(item)) for item in dirs.split(",") if item]
    return name, sorted(runs, key=lambda run: run.seed)


def mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def run_line(run: Run) -> str:
    """One progress-log row: run, seed, dev/test F1 per benchmark, epochs, wall time, threads."""
    results = run.results
    cells = []
    for name in BENCHMARKS:
        dev, test = run.f1(name, "dev"), run.f1(name, "test")
        cells.append("–" if dev is None or test is None else f"{dev:.2f} / {test:.2f}")
    wall = results.get("wall_seconds")
    average = results.get("average") or {}
    averaged = f"avg{results['averaged_last']}" if results.get("averaged_last") else "single"
    tried = f" (avg dev {average['dev_f1']:.2f})" if average else ""
    return (
        f"| {run.directory.name} | {run.seed} | {cells[0]} | {cells[1]} | "
        f"{results['best_epoch']}/{results.get('planned_epochs', results['epochs_run'])} {averaged}{tried} | "
        f"{'–' if wall is None else f'{wall / 60:.1f} min'} | {results.get('num_threads', '–')} | "
        f"{results.get('train_precision', '–')} |"
    )


def table(groups: list[tuple[str, list[Run]]]) -> str:
    head = "| recipe | seeds | " + " | ".join(
        f"{SHORT[name]} dev | {SHORT[name]} test" for name in BENCHMARKS
    )
    lines = [head + " |", "|---|---|" + "---:|" * (2 * len(BENCHMARKS))]
    for name, runs in groups:
        cells = []
        for benchmark in BENCHMARKS:
            for split in ("dev", "test"):
                values = [v for run in runs if (v := run.f1(benchmark, split)) is not None]
                cells.append(mean_std(values))
        seeds = ",".join(str(run.seed) for run in runs)
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(base: tuple[str, list[Run]], other: tuple[str, list[Run]]) -> str:
    base_runs = {run.seed: run for run in base[1]}
    pairs = [(base_runs[run.seed], run) for run in other[1] if run.seed in base_runs]
    lines = [
        f"{other[0]} − {base[0]}, paired by seed ({len(pairs)} pairs):",
        "",
        "| benchmark | split | per seed | mean |",
        "|---|---|---|---:|",
    ]
    for benchmark in BENCHMARKS:
        for split in ("dev", "test"):
            diffs = []
            for a, b in pairs:
                fa, fb = a.f1(benchmark, split), b.f1(benchmark, split)
                if fa is not None and fb is not None:
                    diffs.append((a.seed, fb - fa))
            if diffs:
                per_seed = ", ".join(f"{seed}: {d:+.2f}" for seed, d in diffs)
                lines.append(
                    f"| {SHORT[benchmark]} | {split} | {per_seed} | "
                    f"{statistics.fmean(d for _, d in diffs):+.2f} |"
                )
    return "\n".join(lines)


def types(groups: list[tuple[str, list[Run]]]) -> str:
    lines = ["| recipe | benchmark | " + " | ".join(TYPES) + " |", "|---|---|" + "---:|" * len(TYPES)]
    for name, runs in groups:
        for benchmark in BENCHMARKS:
            entries = [entry for run in runs if (entry := run.benchmark(benchmark)) is not None]
            if not entries:
                continue
            cells = [
                f"{statistics.fmean(e['test']['per_type'][t]['f1'] for e in entries):.1f}" for t in TYPES
            ]
            lines.append(f"| {name} | {SHORT[benchmark]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def casing(groups: list[tuple[str, list[Run]]], split: str = "test") -> str:
    lines = [
        f"| recipe | benchmark | {split} as written | " + " | ".join(CASES) + " |",
        "|---|---|---:|" + "---:|" * len(CASES),
    ]
    for name, runs in groups:
        for benchmark in BENCHMARKS:
            scored = [
                run
                for run in runs
                if run.f1(benchmark, split) is not None
                and all(run.casing_f1(benchmark, split, case) is not None for case in CASES)
            ]
            if not scored:
                continue
            original = [f1 for run in scored if (f1 := run.f1(benchmark, split)) is not None]
            cells = [mean_std(original)]
            for case in CASES:
                values = [f1 for run in scored if (f1 := run.casing_f1(benchmark, split, case)) is not None]
                gap = statistics.fmean(values) - statistics.fmean(original)
                cells.append(f"{mean_std(values)} ({gap:+.2f})")
            lines.append(f"| {name} | {SHORT[benchmark]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["runs", "table", "paired", "types", "casing"])
    parser.add_argument("items", nargs="+", help="run directories (runs) or NAME=DIR,DIR... groups")
    parser.add_argument("--split", default="test", choices=["dev", "test"], help="casing: which split")
    args = parser.parse_args(argv)
    if args.what == "runs":
        print(
            "| run | seed | T15 dev / test | T17 dev / test | best epoch / planned "
            "| wall | threads | precision |"
        )
        print("|---|---:|---:|---:|---|---:|---:|---|")
        for item in args.items:
            print(run_line(load_run(Path(item))))
        return 0
    groups = [parse_group(item) for item in args.items]
    if args.what == "table":
        print(table(groups))
    elif args.what == "paired":
        for other in groups[1:]:
            print(paired(groups[0], other))
    elif args.what == "types":
        print(types(groups))
    else:
        print(casing(groups, args.split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
