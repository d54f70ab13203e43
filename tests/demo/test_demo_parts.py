"""The demo's pure parts: the sample layout, the reuse fingerprints, the posts and the metrics summary.

The posts and the deliberately malformed messages are checked with the worker's real parser, and
the sample layout with the trainer's real CoNLL reader, so the demo cannot drift from either.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bga_mner.demo import export, layout, report, training, worker_run
from bga_mner.demo import posts as demo_posts
from bga_mner.posts import InvalidPost, LimitSettings, parse_post
from training.data.conll import read_twitter_mner
from worker.observability.metrics import WorkerMetrics

CONLL = "IMGID:1\nHello\tO\nParis\tB-LOC\n\nIMGID:2\nAngela\tB-PER\nMerkel\tI-PER\nwaves\tO\n\n"


def _limits() -> LimitSettings:
    return LimitSettings()


def test_sample_layout_holds_out_every_fifth_sentence(tmp_path: Path) -> None:
    train, dev, test = training.write_sample_layout(layout.SAMPLE_TRAIN, tmp_path)
    assert [p.name for p in (train, dev, test)] == ["train.txt", "valid.txt", "test.txt"]
    assert train.parent == tmp_path / training.SAMPLE_LAYOUT_DATASET
    all_sentences = read_twitter_mner(layout.SAMPLE_TRAIN)
    train_sentences, dev_sentences = read_twitter_mner(train), read_twitter_mner(dev)
    assert (len(all_sentences), len(train_sentences), len(dev_sentences)) == (50, 40, 10)
    assert read_twitter_mner(test) == dev_sentences
    assert sorted(s.image_id or "" for s in train_sentences + dev_sentences) == sorted(
        s.image_id or "" for s in all_sentences
    )
    assert {s.image_id for s in dev_sentences} == {f"sample{n:03d}" for n in range(4, 50, 5)}


def test_sample_layout_is_rewritten_only_when_it_changed(tmp_path: Path) -> None:
    files = training.write_sample_layout(layout.SAMPLE_TRAIN, tmp_path)
    before = [f.stat().st_mtime_ns for f in files]
    training.write_sample_layout(layout.SAMPLE_TRAIN, tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == before


def _plan(tmp_path: Path, overrides: tuple[str, ...] = (), data_dir: str = "a") -> training.TrainingPlan:
    config = tmp_path / "config.yaml"
    if not config.exists():
        config.write_text("optim:\n  epochs: 3\n", encoding="utf-8")
    data = tmp_path / "train.txt"
    if not data.exists():
        data.write_text(CONLL, encoding="utf-8")
    return training.TrainingPlan("sample", config, overrides, tmp_path / data_dir, (data,))


def test_fingerprint_follows_config_overrides_and_data_but_not_the_data_path(tmp_path: Path) -> None:
    base = _plan(tmp_path).fingerprint()
    assert _plan(tmp_path, data_dir="elsewhere").fingerprint() == base
    assert _plan(tmp_path, ("optim.epochs=2",)).fingerprint() != base
    (tmp_path / "config.yaml").write_text("optim:\n  epochs: 4\n", encoding="utf-8")
    changed_config = _plan(tmp_path).fingerprint()
    assert changed_config != base
    (tmp_path / "train.txt").write_text(CONLL + "IMGID:3\nx\tO\n", encoding="utf-8")
    assert _plan(tmp_path).fingerprint() != changed_config


def test_train_argv_runs_the_train_command_with_the_data_dir(tmp_path: Path) -> None:
    plan = _plan(tmp_path, ("optim.epochs=2",))
    argv = plan.argv(tmp_path / "out")
    assert argv[:4] == [sys.executable, "-m", "bga_mner.cli", "train"]
    assert argv[argv.index("--set") + 1 : argv.index("--out")] == [
        f"data.data_dir={tmp_path / 'a'}",
        "optim.epochs=2",
    ]


def test_checkpoint_is_current_needs_weights_results_and_the_same_fingerprint(tmp_path: Path) -> None:
    assert not training.checkpoint_is_current(tmp_path, "abc")
    (tmp_path / layout.STAMP_FILE).write_text(json.dumps({"fingerprint": "abc"}), encoding="utf-8")
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    assert not training.checkpoint_is_current(tmp_path, "abc")  # no results.json: training did not finish
    (tmp_path / "results.json").write_text("{}", encoding="utf-8")
    assert training.checkpoint_is_current(tmp_path, "abc")
    assert not training.checkpoint_is_current(tmp_path, "abd")


def test_export_fingerprint_changes_with_the_weights(tmp_path: Path) -> None:
    (tmp_path / layout.STAMP_FILE).write_text(json.dumps({"fingerprint": "abc"}), encoding="utf-8")
    weights = tmp_path / "checkpoint.pt"
    weights.write_bytes(b"weights")
    first = export.export_fingerprint(tmp_path)
    assert export.export_fingerprint(tmp_path) == first
    weights.write_bytes(b"other weights")
    assert export.export_fingerprint(tmp_path) != first


def test_plan_uses_the_sample_without_benchmark_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGA_DATA_DIR", str(tmp_path / "missing"))
    paths = layout.DemoPaths(tmp_path / "demo")
    plan = training.plan_training(paths, "auto", quick=False, extra=["optim.max_minutes=1"])
    assert plan.source == "sample"
    assert plan.config == layout.CONFIG_DIR / "sample.yaml" and plan.config.is_file()
    assert plan.overrides == ("optim.max_minutes=1",)
    assert plan.data_dir == paths.sample_data.resolve()
    with pytest.raises(layout.DemoError, match="twitter2017"):
        training.plan_training(paths, "twitter2017", quick=False, extra=[])


def test_plan_prefers_twitter2017_when_present_unless_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("train.txt", "valid.txt", "test.txt"):
        (tmp_path / "data" / "twitter2017").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "twitter2017" / name).write_text(CONLL, encoding="utf-8")
    monkeypatch.setenv("BGA_DATA_DIR", str(tmp_path / "data"))
    paths = layout.DemoPaths(tmp_path / "demo")
    plan = training.plan_training(paths, "auto", quick=False, extra=[])
    assert (plan.source, plan.data_dir) == ("twitter2017", tmp_path / "data")
    assert plan.config == layout.CONFIG_DIR / "twitter2017.yaml" and plan.config.is_file()
    assert training.plan_training(paths, "sample", quick=False, extra=[]).source == "sample"
    quick = training.plan_training(paths, "auto", quick=True, extra=[])
    assert quick.source == "sample" and quick.overrides == ("optim.epochs=2",)


def test_demo_configs_load_as_training_configs() -> None:
    from training.config import load_config

    for name in ("sample.yaml", "twitter2017.yaml"):
        config = load_config(layout.CONFIG_DIR / name)
        assert config.model.variant == "bga"
        assert config.optim.max_minutes is not None and config.runtime.num_threads <= 2


def test_sample_posts_are_valid_posts() -> None:
    posts = demo_posts.sample_posts()
    assert len(posts) == 50 and len({p["id"] for p in posts}) == 50
    for post in posts:
        assert parse_post(json.dumps(post).encode(), _limits()).id == post["id"]


def test_malformed_messages_hit_each_parse_time_dead_letter_reason() -> None:
    reasons = []
    for message in demo_posts.malformed_messages():
        assert message.valid_id is None
        with pytest.raises(InvalidPost) as caught:
            parse_post(message.value, _limits())
        reasons.append(caught.value.reason)
    assert sorted(reasons) == ["invalid_json", "oversize", "schema"]


def test_build_messages_keys_by_post_id_and_spreads_the_bad_ones() -> None:
    posts = [{"id": f"p{n}", "text": f"post {n}"} for n in range(20)]
    bad = demo_posts.malformed_messages()
    messages = demo_posts.build_messages(posts, bad)
    assert [m.valid_id for m in messages if m.valid_id] == [p["id"] for p in posts]
    assert all(m.key == m.valid_id.encode() for m in messages if m.valid_id)
    positions = [n for n, m in enumerate(messages) if m.valid_id is None]
    assert len(positions) == 3 and positions[0] > 0 and positions[-1] < len(messages) - 1
    assert all(b - a > 1 for a, b in itertools.pairwise(positions))


def test_twitter_posts_join_the_gold_tokens(tmp_path: Path) -> None:
    test_file = tmp_path / "test.txt"
    test_file.write_text(CONLL, encoding="utf-8")
    posts = demo_posts.twitter_posts(test_file, 5)
    assert posts == [
        {"id": "twitter2017-test-1", "text": "Hello Paris", "lang": "en"},
        {"id": "twitter2017-test-2", "text": "Angela Merkel waves", "lang": "en"},
    ]
    assert demo_posts.twitter_posts(test_file, 1) == posts[:1]


def test_summarise_metrics_reads_the_worker_exposition() -> None:
    metrics = WorkerMetrics()
    metrics.consumed.labels(topic=layout.TOPIC).inc(53)
    metrics.tagged.inc(50)
    metrics.dead_lettered.labels(reason="schema").inc()
    metrics.dead_lettered.labels(reason="invalid_json").inc(2)
    for size in (20, 30):
        metrics.batch_size.observe(size)
    metrics.triton_latency_seconds.observe(0.01)
    metrics.triton_latency_seconds.observe(0.03)
    summary = dict(worker_run.summarise_metrics(worker_run.parse_samples(metrics.exposition().decode())))
    assert summary["posts consumed"] == "53"
    assert summary["posts tagged"] == "50"
    assert summary["dead-lettered"] == "3 (invalid_json 2, schema 1)"
    assert summary["mean batch size"] == "25.0 (n=2)"
    assert summary["mean Triton latency"] == "20.0 ms (n=2)"
    assert summary["mean Redis latency"] == "-"


def test_pick_posts_prefers_posts_with_entities_from_both_sources() -> None:
    posts = [{"id": f"demo-{n}"} for n in range(6)] + [{"id": f"twitter2017-test-{n}"} for n in range(6)]
    entity = [{"text": "x", "type": "PER", "start": 0, "end": 1, "score": 1.0}]
    records = {str(p["id"]): {"entities": entity if n % 2 == 0 else []} for n, p in enumerate(posts)}
    assert report.pick_posts(records, posts, 4) == [
        "demo-0",
        "demo-2",
        "twitter2017-test-0",
        "twitter2017-test-2",
    ]
    only_sample = posts[:6]
    assert report.pick_posts(records, only_sample, 10) == ["demo-0", "demo-2", "demo-4"]


def test_demo_module_and_help_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from bga_mner.cli import build_parser\n"
        "build_parser().parse_args(['demo', '--quick'])\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_describe_results_says_what_the_f1_is_measured_on() -> None:
    results = {"dev": {"f1": 72.384}, "test": {"f1": 72.29}, "best_epoch": 1, "epochs_run": 1}
    line = training.describe_results(results, "twitter2017")
    assert "dev F1 72.38, test F1 72.29" in line and "not a benchmark result" in line
    assert training.describe_results(results, "sample").startswith(
        "F1 72.38 on the 10 held-out sample sentences"
    )
