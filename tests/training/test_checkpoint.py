"""The typed training state: save/load round trip, and checkpoint files of the older dict format."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import training.checkpoint as checkpoint
from training.checkpoint import ResumeState, TrainingCard, TrainingState, save_checkpoint
from training.config import TrainConfig
from training.data.labels import LABELS
from training.model.config import ModelConfig

CARD = TrainingCard(
    backbone="tiny",
    image_encoder="none",
    variant="text_crf",
    dataset="twitter2015",
    training_data_sha256="0" * 64,
    dev_f1=71.5,  # percent
    test_f1=None,
    git_commit=None,
    epoch=3,
    benchmarks=("twitter2015", "twitter2017"),
)


def _state(resume: ResumeState | None = None) -> TrainingState:
    model_config = ModelConfig(text_encoder="tiny", variant="text_crf")
    return TrainingState(
        model_config=model_config,
        train_config=TrainConfig(model=model_config),
        labels=list(LABELS),
        state_dict={"w": torch.arange(4, dtype=torch.float32), "ids": torch.tensor([1, 2])},
        backbone_config={"hidden_size": 8},
        epoch=4,
        best_dev_f1=71.5,
        best_epoch=3,
        averaged_last=3,
        history=[{"epoch": 1, "dev_f1": 60.0}],
        card=CARD,
        resume=resume,
    )


def test_round_trip_with_and_without_resume_state(tmp_path: Path) -> None:
    resume = ResumeState(
        optimizer={"state": {}}, scheduler={"last_epoch": 7}, scaler={}, rng={"python": None}
    )
    for state in (_state(), _state(resume)):
        path = tmp_path / "state.pt"
        state.save(path)
        loaded = TrainingState.load(path)
        assert loaded.model_config == state.model_config and loaded.train_config == state.train_config
        assert torch.equal(loaded.state_dict["w"], state.state_dict["w"])
        assert (loaded.epoch, loaded.best_dev_f1, loaded.best_epoch, loaded.averaged_last) == (4, 71.5, 3, 3)
        assert loaded.history == state.history and loaded.card == CARD
        assert loaded.resume == state.resume
        assert not (tmp_path / "state.pt.partial").exists()  # written atomically


def test_the_file_keeps_the_dict_keys_of_the_training_contract(tmp_path: Path) -> None:
    _state().save(tmp_path / "state.pt")
    raw = torch.load(tmp_path / "state.pt", weights_only=False)
    assert set(raw) >= {
        "model_config",
        "train_config",
        "labels",
        "state_dict",
        "optimizer",
        "epoch",
        "best_dev_f1",
    }
    assert raw["optimizer"] is None and raw["card"]["dev_f1"] == 71.5


def test_a_minimal_old_format_dict_loads(tmp_path: Path) -> None:
    """What checkpoints looked like before the typed state (and what tests/export still writes)."""
    model_config = ModelConfig(text_encoder="tiny")
    old = {
        "model_config": model_config.model_dump(mode="json"),
        "train_config": TrainConfig(model=model_config).model_dump(mode="json"),
        "labels": list(LABELS),
        "state_dict": {"w": torch.zeros(2)},
        "card": asdict(CARD),
    }
    save_checkpoint(tmp_path / "old.pt", old)
    loaded = TrainingState.load(tmp_path / "old.pt")
    assert loaded.card == CARD and loaded.resume is None and loaded.history == []
    assert loaded.best_dev_f1 is None and loaded.epoch == 0 and loaded.averaged_last == 0


def test_an_old_format_last_pt_with_optimizer_and_no_best_yet_loads(tmp_path: Path) -> None:
    state = _state().to_dict()
    state.pop("averaged_last")  # a key the older format did not have
    state |= {
        "optimizer": {"state": {}},
        "scheduler": {},
        "scaler": {},
        "rng": {"python": 1},
        "best_dev_f1": -1.0,
    }
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = TrainingState.load(tmp_path / "last.pt")
    assert loaded.resume is not None and loaded.resume.rng == {"python": 1}
    assert loaded.best_dev_f1 is None  # -1 meant "no main epoch yet"
    assert TrainingState.from_dict(loaded.to_dict()).to_dict()["best_dev_f1"] == -1.0


def test_a_file_without_the_required_keys_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "foreign.pt", {"state_dict": {}})
    with pytest.raises(KeyError, match="model_config"):
        TrainingState.load(tmp_path / "foreign.pt")


def test_card_ignores_keys_it_does_not_know_and_defaults_new_ones() -> None:
    assert TrainingCard.from_dict(asdict(CARD) | {"new_field": 1}) == CARD
    assert TrainingCard.from_dict(asdict(CARD) | {"benchmarks": ["twitter2015", "twitter2017"]}) == CARD
    older = {key: value for key, value in asdict(CARD).items() if key != "benchmarks"}
    assert TrainingCard.from_dict(older).benchmarks == ()


def test_the_old_names_are_gone() -> None:
    """``ModelCard`` (the manifest's card) and ``CONFIG_FILE`` (config.pbtxt) name other things."""
    assert not hasattr(checkpoint, "ModelCard") and not hasattr(checkpoint, "CONFIG_FILE")
    assert checkpoint.TRAIN_CONFIG_FILE == "config.yaml"
