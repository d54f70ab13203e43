from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from training.config import dump_config, load_config, parse_override

REPO = Path(__file__).resolve().parents[2]


def test_yaml_then_overrides_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "data:\n  dataset: twitter2017\noptim:\n  lr_encoder: 5.0e-5\n  epochs: 3\n", encoding="utf-8"
    )
    config = load_config(path, ["optim.lr_encoder=3e-5", "model.variant=text_crf", "runtime.device=cpu"])
    assert config.data.dataset == "twitter2017"
    assert config.optim.lr_encoder == pytest.approx(3e-5)
    assert config.optim.epochs == 3
    assert config.model.variant == "text_crf"
    assert config.runtime.device == "cpu"


def test_overrides_parse_yaml_values() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=null") == ("a", None)
    assert parse_override("x.y=[1, 2]") == ("x.y", [1, 2])
    assert parse_override("m.sampler.text_keep=[0.5]") == ("m.sampler.text_keep", [0.5])
    with pytest.raises(ValueError, match="key=value"):
        parse_override("no-equals-sign")


def test_misspelt_keys_are_rejected() -> None:
    with pytest.raises(ValidationError):
        load_config(None, ["optim.lr_encodr=1e-5"])
    with pytest.raises(ValidationError):
        load_config(None, ["model.varient=bga"])


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["data.extra_train=[{dataset: wnut16, split: train}]", "optim.epochs=2"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config


def test_test_splits_are_never_training_data() -> None:
    for key in ("extra_train", "pretrain"):
        with pytest.raises(ValidationError, match="must never be training data"):
            load_config(None, [f"data.{key}=[{{dataset: wnut16, split: test}}]"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    dataset, variant = path.stem.split("-")[:2]
    if dataset == "joint":  # both benchmarks' training splits, selected on both dev sets
        assert config.data.benchmarks == ["twitter2015", "twitter2017"]
        trained = {(s.dataset, s.split) for s in config.data.extra_train} | {(config.data.dataset, "train")}
        assert trained >= {("twitter2015", "train"), ("twitter2017", "train")}
        assert config.model.variant == variant
    else:
        assert (config.data.dataset, config.model.variant) == (dataset, variant)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_schedules_anneal_within_the_planned_epochs(path: Path) -> None:
    """A config whose early stopping can end the run before its schedule does trains at a
    learning rate that never annealed (issue 12): patience must outlast the planned epochs."""
    optim = load_config(path).optim
    assert optim.patience >= optim.epochs, f"{path.name}: patience {optim.patience} < epochs {optim.epochs}"


def test_a_shipped_recipe_is_found_by_name_without_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here
    by_name = load_config(Path("joint-text_crf-release"))
    by_path = load_config(REPO / "configs" / "joint-text_crf-release.yaml")
    assert by_name == by_path == load_config(Path("configs/joint-text_crf-release.yaml"))
    with pytest.raises(FileNotFoundError):
        load_config(Path("no-such-recipe"))
