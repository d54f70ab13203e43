"""A tiny real training run: random 2-layer BERT, a few tweets; checkpoints, resume, evaluate, bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bga_mner.cli import main as cli_main
from tests.fixtures.text_encoder import tiny_text_encoder
from training.checkpoint import BEST_FILE, LAST_FILE, load_for_inference
from training.config import TrainConfig, dump_config, load_config
from training.data.labels import LABELS
from training.trainer import train

pytestmark = pytest.mark.slow

TWEETS = [
    ("101", [("RT", "O"), ("@nba", "O"), (":", "O"), ("LeBron", "B-PER"), ("James", "I-PER"), ("wins", "O")]),
    ("102", [("Rain", "O"), ("in", "O"), ("New", "B-LOC"), ("York", "I-LOC"), ("today", "O")]),
    ("103", [("Apple", "B-ORG"), ("launches", "O"), ("iPhone", "B-OTHER"), ("\ufe0f", "O"), ("#tech", "O")]),
    ("104", [("Obama", "B-PER"), ("visits", "O"), ("Paris", "B-LOC"), ("with", "O"), ("NASA", "B-ORG")]),
    (
        "105",
        [("Watching", "O"), ("Game", "B-OTHER"), ("of", "I-OTHER"), ("Thrones", "I-OTHER"), ("now", "O")],
    ),
    ("106", [("Taylor", "B-PER"), ("Swift", "I-PER"), ("in", "O"), ("London", "B-LOC"), ("!", "O")]),
]


def _write_split(path: Path, tweets: list[tuple[str, list[tuple[str, str]]]]) -> None:
    blocks = [
        f"IMGID:{image_id}\n" + "".join(f"{t}\t{label}\n" for t, label in tokens)
        for image_id, tokens in tweets
    ]
    path.write_text("\n".join(blocks) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir in the twitter2015 layout and a random tiny BERT folder with a real tokenizer.json."""
    root = tmp_path_factory.mktemp("tiny")
    data = root / "data" / "twitter2015"
    data.mkdir(parents=True)
    _write_split(data / "train.txt", TWEETS)
    _write_split(data / "valid.txt", TWEETS[:3])
    _write_split(data / "test.txt", TWEETS[3:])
    other = root / "data" / "twitter2017"  # the second benchmark, for joint training
    other.mkdir()
    _write_split(other / "train.txt", TWEETS[2:])
    _write_split(other / "valid.txt", TWEETS[3:])
    _write_split(other / "test.txt", TWEETS[:3])
    wnut = root / "data" / "wnut16"
    wnut.mkdir()
    for split in ("train", "dev"):
        (wnut / f"{split}.txt").write_text(
            "Messi\tB-person\nat\tO\nCamp\tB-facility\nNou\tI-facility\n\nI\tO\nlove\tO\nStarbucks\tB-company\n\n",
            encoding="utf-8",
        )
    wnut17 = root / "data" / "wnut17"
    wnut17.mkdir()
    (wnut17 / "train.txt").write_text(  # WNUT-17 separates some documents with a lone TAB
        "Metallica\tB-group\nrock\tO\n\t\nI\tO\nuse\tO\nWindows\tB-product\n\n", encoding="utf-8"
    )
    encoder = tiny_text_encoder(root / "tiny-bert")
    return root / "data", encoder


def _config(data_dir: Path, encoder: Path, variant: str, epochs: int) -> TrainConfig:
    return load_config(None, _overrides(data_dir, encoder, variant, epochs))


def _overrides(data_dir: Path, encoder: Path, variant: str, epochs: int) -> list[str]:
    return [
        f"data.data_dir={data_dir}",
        f"model.text_encoder={encoder}",
        f"model.variant={variant}",
        "model.hidden=32",
        "model.casing_dim=8",
        "model.fusion_heads=2",
        "model.generator.heads=2",
        "model.generator.ffn_dim=64",
        "model.generator.image_queries=4",
        "model.generator.text_queries=4",
        f"optim.epochs={epochs}",
        "optim.batch_size=4",
        "optim.lr_heads=5e-3",
        "optim.patience=10",
        "runtime.device=cpu",
        "runtime.progress=false",
        "runtime.num_threads=1",
    ]


@pytest.mark.parametrize("variant", ["text_crf", "bga"])
def test_train_writes_checkpoint_logs_and_resumes(
    tiny_setup: tuple[Path, Path], tmp_path: Path, variant: str
) -> None:
    data_dir, encoder = tiny_setup
    out = tmp_path / "run"
    results = train(_config(data_dir, encoder, variant, epochs=2), out)
    for name in (
        BEST_FILE,
        LAST_FILE,
        "tokenizer.json",
        "metrics.jsonl",
        "curves.png",
        "config.yaml",
        "results.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0.0 <= r["dev_f1"] <= 100.0 for r in records)
    assert results["test"]["gold_entities"] == 6  # tweets 104-106: 3 + 1 + 2
    assert results["dev"]["gold_entities"] == 4

    state = torch.load(out / BEST_FILE, weights_only=False)  # the dict keys of the training contract
    assert set(state) >= {
        "model_config",
        "train_config",
        "labels",
        "state_dict",
        "optimizer",
        "epoch",
        "best_dev_f1",
    }
    assert state["labels"] == LABELS and state["optimizer"] is None
    assert state["card"]["test_f1"] == pytest.approx(results["test"]["f1"])

    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(data_dir, encoder, variant, epochs=2), out)
    train(_config(data_dir, encoder, variant, epochs=3), out, resume=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # resumed after epoch 2, ran only epoch 3
    assert torch.load(out / LAST_FILE, weights_only=False)["epoch"] == 3


def test_pretraining_and_joint_training_on_wnut16(tiny_setup: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, encoder = tiny_setup
    config = _config(data_dir, encoder, "text_crf", epochs=1)
    overrides = {
        "pretrain": [{"dataset": "wnut16", "split": "train"}],
        "pretrain_epochs": 1,
        "extra_train": [{"dataset": "wnut16", "split": "dev"}],
    }
    config = config.model_copy(
        update={"data": config.data.model_validate(config.data.model_dump() | overrides)}
    )
    results = train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["phase"]) for r in records] == [(1, "pretrain"), (2, "train")]
    assert results["best_epoch"] == 2  # pre-training epochs are never selected


def test_joint_training_selects_on_both_benchmarks_and_reports_casing(
    tiny_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """Both benchmarks' train, WNUT-17 pre-training, case augmentation, averaging, casing scores."""
    data_dir, encoder = tiny_setup
    config = _config(data_dir, encoder, "text_crf", epochs=2)
    update = {
        "extra_train": [{"dataset": "twitter2017", "split": "train"}],
        "eval_datasets": ["twitter2017"],
        "pretrain": [{"dataset": "wnut17", "split": "train"}],
        "pretrain_epochs": 1,
        "case_augment": {"lower": 0.5, "upper": 0.25},
    }
    config = config.model_copy(
        update={
            "data": config.data.model_validate(config.data.model_dump() | update),
            "optim": config.optim.model_copy(update={"average_last": 2}),
            "runtime": config.runtime.model_copy(update={"eval_casing": True, "cpu_bf16": True}),
        }
    )
    out = tmp_path / "joint"
    results = train(config, out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["pretrain", "train", "train"]
    for record in records:
        by_dataset = record["dev_f1_by_dataset"]
        assert set(by_dataset) == {"twitter2015", "twitter2017"}
        assert record["dev_f1"] == pytest.approx((by_dataset["twitter2015"] + by_dataset["twitter2017"]) / 2)
    assert records[-1]["lr_encoder"] == pytest.approx(0.0, abs=1e-12)  # the schedule ended annealed
    assert set(results["benchmarks"]) == {"twitter2015", "twitter2017"}
    assert results["benchmarks"]["twitter2017"]["test"]["gold_entities"] == 4  # tweets 101-103
    assert set(results["benchmarks"]["twitter2015"]["casing"]["test"]) == {"lower", "upper", "title"}
    assert results["average"]["epochs"] == 2 and results["planned_epochs"] == 3
    assert results["averaged_last"] in (0, 2) and results["train_precision"] == "bfloat16"
    bundle = load_for_inference(out)
    assert bundle.card.dataset == "twitter2015"  # the primary benchmark, a data set export can read
    assert bundle.card.benchmarks == ("twitter2015", "twitter2017")


def test_a_student_distils_from_trained_teachers(tiny_setup: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, encoder = tiny_setup
    teachers = []
    for seed in (1, 2):
        config = _config(data_dir, encoder, "text_crf", epochs=1)
        config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"seed": seed})})
        train(config, tmp_path / f"teacher{seed}")
        teachers.append(str(tmp_path / f"teacher{seed}"))
    config = load_config(
        None,
        [
            *_overrides(data_dir, encoder, "bga", epochs=2),
            f"distill.teachers={teachers}",
            "data.case_augment.lower=0.5",
        ],
    )
    results = train(config, tmp_path / "student")
    records = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all(record["losses"]["distill"] > 0 for record in records)
    assert results["distilled_from"] == teachers


def test_loss_falls_and_dev_f1_rises_when_overfitting(tiny_setup: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, encoder = tiny_setup
    config = _config(data_dir, encoder, "text_crf", epochs=25)
    config = config.model_copy(
        update={"optim": config.optim.model_copy(update={"lr_encoder": 1e-3, "warmup_ratio": 0.0})}
    )
    train(config, tmp_path / "overfit")
    records = [json.loads(line) for line in (tmp_path / "overfit" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < 0.3 * records[0]["train_loss"]
    assert max(r["dev_f1"] for r in records) > 50.0  # dev tweets are training tweets here


def test_evaluate_command_and_inference_bundle(
    tiny_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, encoder = tiny_setup
    out = tmp_path / "run"
    train(_config(data_dir, encoder, "bga", epochs=1), out)
    assert (
        cli_main(
            [
                "evaluate",
                "--checkpoint",
                str(out),
                "--split",
                "test",
                "--data-dir",
                str(data_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "micro" in printed
    scores = json.loads((out / "eval-twitter2015-test.json").read_text())
    assert scores["gold_entities"] == 6
    assert scores["f1"] == pytest.approx(json.loads((out / "results.json").read_text())["test"]["f1"])

    # Robustness to how people type: the same split recased, one JSON per case.
    argv = ["evaluate", "--checkpoint", str(out), "--data-dir", str(data_dir), "--device", "cpu"]
    assert cli_main([*argv, "--case", "original", "lower", "upper", "title"]) == 0
    assert "F1 change against the original casing: lower" in capsys.readouterr().out
    for case in ("lower", "upper", "title"):
        recased = json.loads((out / f"eval-twitter2015-test-{case}.json").read_text())
        assert recased["case"] == case and recased["gold_entities"] == 6

    bundle = load_for_inference(out)
    assert bundle.labels == LABELS and bundle.max_length == 128 and bundle.tokenizer_json.is_file()
    assert bundle.crf.transitions.shape == (len(LABELS), len(LABELS))
    assert not bundle.module.training
    ids = torch.tensor([[101, 2000, 3000, 102]])
    emissions = bundle.module(ids, torch.ones_like(ids), torch.tensor([[0, 1, 2, 0]]))
    assert emissions.shape == (1, 4, len(LABELS))

    # A checkpoint moved to a machine without the training machine's encoder folder still loads:
    # the architecture comes from the saved backbone config, the weights from the state_dict.
    state = torch.load(out / BEST_FILE, weights_only=False)
    state["model_config"]["text_encoder"] = str(tmp_path / "no-such-encoder-folder")
    moved = tmp_path / "moved"
    moved.mkdir()
    torch.save(state, moved / BEST_FILE)
    shutil.copy(out / "tokenizer.json", moved / "tokenizer.json")
    moved_bundle = load_for_inference(moved)
    moved_emissions = moved_bundle.module(ids, torch.ones_like(ids), torch.tensor([[0, 1, 2, 0]]))
    assert torch.allclose(moved_emissions, emissions, atol=1e-6)


def test_train_command_resumes_with_the_runs_own_config(
    tiny_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, encoder = tiny_setup
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(dump_config(_config(data_dir, encoder, "text_crf", epochs=1)), encoding="utf-8")
    out = tmp_path / "run"
    assert cli_main(["train", "--config", str(config_file), "--out", str(out)]) == 0
    assert cli_main(["train", "--out", str(out), "--resume", "--set", "optim.epochs=2"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert load_config(out / "config.yaml").model.text_encoder == str(encoder)
