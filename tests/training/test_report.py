"""The tables of docs/results.md: mean ± std, paired differences and casing, from results.json."""

from __future__ import annotations

import json
from pathlib import Path

from training.report import casing, load_run, paired, table


def _scores(f1: float) -> dict[str, object]:
    return {"f1": f1, "precision": f1, "recall": f1, "per_type": {}}


def _run(root: Path, name: str, seed: int, t15: float, t17: float, lower: float | None = None) -> Path:
    directory = root / name
    directory.mkdir()
    benchmarks = {
        "twitter2015": {"dev": _scores(t15), "test": _scores(t15 - 1)},
        "twitter2017": {"dev": _scores(t17), "test": _scores(t17 - 1)},
    }
    if lower is not None:
        recased = {case: _scores(lower) for case in ("lower", "upper", "title")}
        benchmarks["twitter2015"]["casing"] = {"dev": recased, "test": recased}
    results = {"seed": seed, "dataset": "twitter2015", "benchmarks": benchmarks, "best_epoch": 1}
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return directory


def test_table_and_paired_differences(tmp_path: Path) -> None:
    base = [load_run(_run(tmp_path, f"b{s}", s, 70.0 + s, 80.0)) for s in (1, 2)]
    other = [load_run(_run(tmp_path, f"o{s}", s, 71.0 + 2 * s, 80.5)) for s in (1, 2)]
    printed = table([("base", base), ("other", other)])
    assert "| base | 1,2 | 71.50 ± 0.71 | 70.50 ± 0.71 | 80.00 ± 0.00 | 79.00 ± 0.00 |" in printed
    differences = paired(("base", base), ("other", other))
    assert "| T15 | dev | 1: +2.00, 2: +3.00 | +2.50 |" in differences
    assert "| T17 | test | 1: +0.50, 2: +0.50 | +0.50 |" in differences


def test_casing_reads_results_json_or_evaluate_files(tmp_path: Path) -> None:
    from_results = load_run(_run(tmp_path, "a", 1, 72.0, 85.0, lower=62.0))
    from_files = load_run(_run(tmp_path, "b", 1, 72.0, 85.0))
    for case in ("lower", "upper", "title"):
        (from_files.directory / f"eval-twitter2015-dev-{case}.json").write_text(json.dumps({"f1": 70.0}))
    printed = casing([("a", [from_results]), ("b", [from_files])], "dev")
    assert "| a | T15 | 72.00 | 62.00 (-10.00) |" in printed
    assert "| b | T15 | 72.00 | 70.00 (-2.00) |" in printed
    assert "T17" not in printed  # no recased scores for Twitter-2017: no row
