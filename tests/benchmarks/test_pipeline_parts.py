"""The measuring parts of benchmarks/pipeline.py and benchmarks/gpu.py (not the speed itself)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu  # noqa: E402
from pipeline_bench import report  # noqa: E402
from pipeline_bench.posts import load_posts  # noqa: E402
from pipeline_bench.procs import ProcessTree, run_child  # noqa: E402


def test_run_child_counts_the_childs_cpu_and_memory(tmp_path: Path) -> None:
    busy = (
        "import time\nx = bytearray(64 * 2**20)\n"
        "end = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    )
    run = run_child([sys.executable, "-c", busy], tmp_path / "out")
    assert run.returncode == 0
    assert 0.45 <= run.cpu_s <= 2.0
    assert run.peak_rss_bytes >= 64 * 2**20


def test_process_tree_counts_descendants(tmp_path: Path) -> None:
    import subprocess

    spin = (
        "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(5)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"]
    )
    try:
        tree = ProcessTree(parent.pid)
        tree.start()
        time.sleep(2.0)
        assert tree.stop() >= 0.4  # the grandchild's CPU is counted
        assert tree.peak_rss_bytes() > 0
    finally:
        parent.kill()
        parent.wait()


def test_posts_repeat_with_distinct_ids() -> None:
    posts = load_posts(100)
    assert len(posts.posts) == 100
    assert len({p["id"] for p in posts.posts}) == 100
    assert "/" not in posts.source.split(" ")[0] or posts.source.startswith("bga_mner/")


def test_ratios_and_table() -> None:
    systems = {
        name: report.summarise(name, [{"posts_per_s": pps, "cpu_s_per_post": cpu, "peak_rss_mb": 100.0}], 10)
        for name, pps, cpu in (
            ("spacy", 500.0, 0.002),
            ("tag", 250.0, 0.004),
            ("triton", 400.0, 0.003),
            ("worker", 360.0, 0.005),
        )
    }
    report.add_ratios(systems)
    assert systems["tag"]["ratios"]["cpu_s_per_post_vs_spacy"] == pytest.approx(2.0)
    assert systems["worker"]["ratios"]["posts_per_s_vs_triton"] == pytest.approx(0.9)
    text = report.table(systems)
    assert "worker end to end" in text and "2.00" in text
    assert report.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 50) == 3.0


def test_gpu_script_decoder_matches_the_serving_decoder() -> None:
    from bga_mner.decoding import CRFParams, viterbi

    rng = np.random.default_rng(0)
    for length in (1, 2, 7, 30):
        emissions = rng.normal(size=(length, 9)).astype(np.float32)
        start, end, transitions = rng.normal(size=9), rng.normal(size=9), rng.normal(size=(9, 9))
        crf = CRFParams(start=start, end=end, transitions=transitions)
        expected, _ = viterbi(emissions, crf)
        assert gpu.viterbi(emissions, start, transitions, end) == list(expected)


def test_gpu_script_f1_matches_the_project_scorer() -> None:
    from training.evaluation.scores import score_tags

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O", "B-MISC", "I-MISC"], ["O", "O"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"], ["B-PER", "O"]]
    assert gpu.f1(gold, predicted) == pytest.approx(score_tags(gold, predicted).f1)


def test_gpu_run_skips_cleanly_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the skip path does not apply")
    out = tmp_path / "gpu.json"
    assert gpu.main(["run", "--bundle", str(tmp_path / "missing.pt"), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert not out.exists()
