"""Summaries, ratios, the printed table and the chart of a pipeline benchmark run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SYSTEMS = ("spacy", "tag", "triton", "worker")
TITLES = {
    "spacy": "spaCy en_core_web_sm (tok2vec+ner)",
    "tag": "bga-mner tag (in-process)",
    "triton": "Triton alone (gRPC client)",
    "worker": "worker end to end",
}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(system: str, repeats: list[dict[str, Any]], posts: int) -> dict[str, Any]:
    """Median over the repeats of each measure; the repeats themselves are kept too."""
    keys = (
        "posts_per_s",
        "posts_per_s_steady",
        "cpu_s_per_post",
        "cpu_s_per_post_steady",
        "p50_ms",
        "p99_ms",
        "peak_rss_mb",
    )
    summary: dict[str, Any] = {"title": TITLES[system], "posts": posts, "repeats": repeats}
    for key in keys:
        values = [r[key] for r in repeats if r.get(key) is not None]
        summary[key] = median(values)
        if values:
            summary[f"{key}_range"] = [min(values), max(values)]
    cpu_parts: dict[str, list[float]] = {}
    for r in repeats:
        for name, seconds in r.get("cpu_s_by_process", {}).items():
            cpu_parts.setdefault(name, []).append(seconds / posts)
    if cpu_parts:
        summary["cpu_s_per_post_by_process"] = {k: median(v) for k, v in cpu_parts.items()}
    return summary


def add_ratios(systems: dict[str, dict[str, Any]]) -> None:
    peer = systems.get("spacy")
    triton = systems.get("triton")
    for summary in systems.values():
        ratios: dict[str, float] = {}
        if peer:
            for key in ("cpu_s_per_post", "cpu_s_per_post_steady", "posts_per_s"):
                if summary.get(key) and peer.get(key):
                    ratios[f"{key}_vs_spacy"] = summary[key] / peer[key]
        if triton and summary.get("posts_per_s") and triton.get("posts_per_s"):
            ratios["posts_per_s_vs_triton"] = summary["posts_per_s"] / triton["posts_per_s"]
            if summary.get("posts_per_s_steady"):
                ratios["posts_per_s_steady_vs_triton"] = summary["posts_per_s_steady"] / triton["posts_per_s"]
        summary["ratios"] = ratios


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(systems: dict[str, dict[str, Any]]) -> str:
    header = (
        f"{'system':<36}{'posts/s':>9}{'CPU ms/post':>12}{'steady':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'RSS MB':>8}{'CPU x spaCy':>12}{'x Triton':>9}"
    )
    lines = [header, "-" * len(header)]
    for name in SYSTEMS:
        s = systems.get(name)
        if s is None:
            continue
        cpu = s.get("cpu_s_per_post")
        steady = s.get("cpu_s_per_post_steady")
        ratios = s.get("ratios", {})
        lines.append(
            f"{s['title']:<36}{_fmt(s.get('posts_per_s'), '.1f'):>9}"
            f"{_fmt(cpu * 1000 if cpu else None, '.2f'):>12}"
            f"{_fmt(steady * 1000 if steady else None, '.2f'):>8}"
            f"{_fmt(s.get('p50_ms'), '.1f'):>9}{_fmt(s.get('p99_ms'), '.1f'):>9}"
            f"{_fmt(s.get('peak_rss_mb'), '.0f'):>8}{_fmt(ratios.get('cpu_s_per_post_vs_spacy'), '.2f'):>12}"
            f"{_fmt(ratios.get('posts_per_s_vs_triton'), '.2f'):>9}"
        )
    return "\n".join(lines)


def chart(runs: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> Path:
    """Grouped bars: per system, one bar per run label (e.g. before / after), medians with min-max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in SYSTEMS if any(n in systems for systems in runs.values())]
    labels = [TITLES[n].replace(" (", "\n(") for n in names]
    width = 0.8 / max(1, len(runs))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for axis, key, scale, ylabel in (
        (axes[0], "posts_per_s", 1.0, "posts/s (higher is better)"),
        (axes[1], "cpu_s_per_post", 1000.0, "CPU ms per post, all processes (lower is better)"),
        (axes[2], "peak_rss_mb", 1.0, "peak RSS MB (lower is better)"),
    ):
        for offset, (label, systems) in enumerate(runs.items()):
            xs, values, low, high = [], [], [], []
            for index, name in enumerate(names):
                summary = systems.get(name)
                if summary is None or summary.get(key) is None:
                    continue
                value = summary[key] * scale
                lo, hi = summary.get(f"{key}_range", [summary[key], summary[key]])
                xs.append(index + (offset - (len(runs) - 1) / 2) * width)
                values.append(value)
                low.append(value - lo * scale)
                high.append(hi * scale - value)
            axis.bar(xs, values, width, yerr=[low, high], capsize=3, label=label)
            for x, value in zip(xs, values, strict=True):
                axis.annotate(f"{value:.1f}", (x, value), ha="center", va="bottom", fontsize=6)
        axis.set_xticks(range(len(names)), labels, fontsize=7)
        axis.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
