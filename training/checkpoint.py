"""Checkpoint directories: what training writes and what export and evaluation read back.

A checkpoint directory holds `checkpoint.pt` (the best model on dev: the one export ships),
`last.pt` (the latest epoch with optimiser, scheduler and RNG state, for `--resume`),
`tokenizer.json` (the text encoder's fast tokenizer, the file serving encodes with), plus
`config.yaml`, `metrics.jsonl` and `curves.png` for people.

Both `.pt` files hold one `TrainingState` (as Hugging Face's `TrainerState` is one typed object
saved and loaded whole). On disk it is a plain dict with the keys of the training contract, so files
written before the typed state existed load unchanged, and the shipped `checkpoint.pt` carries no
optimiser state (`resume` is None) to stay small.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from training.config import TrainConfig
from training.model.bga_mner import BGAMNER, TextOnlyInference
from training.model.config import ModelConfig

if TYPE_CHECKING:
    from bga_mner.decoding import CRFParams

BEST_FILE = "checkpoint.pt"
LAST_FILE = "last.pt"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
TRAIN_CONFIG_FILE = "config.yaml"  # the run's TrainConfig (not the Triton config.pbtxt of export)


@dataclass(frozen=True)
class TrainingCard:
    """How the model was trained: what export copies into the manifest's card.

    F1 is in **percent**, the project's one unit for F1 (as the papers report it), here and in the
    manifest's card alike.
    """

    backbone: str
    image_encoder: str
    variant: str
    dataset: str
    training_data_sha256: str
    dev_f1: float | None
    test_f1: float | None
    git_commit: str | None
    epoch: int
    # Every benchmark whose dev set selected the model (`data.benchmarks`; `dataset` is the first).
    # A joint model lists both; cards written before this field existed leave it empty.
    benchmarks: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingCard:
        """Read a saved card; keys this version does not know are ignored (a newer writer's extras)."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "benchmarks" in values:
            values["benchmarks"] = tuple(values["benchmarks"])
        return cls(**values)


@dataclass
class ResumeState:
    """What `--resume` needs beyond the weights: optimiser, schedule, loss scaler and RNG states."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]  # {"python": random.getstate(), "torch": torch.get_rng_state()}


@dataclass
class TrainingState:
    """Everything one checkpoint file holds: configuration, labels, weights, progress and card.

    `save`/`load` round-trip it as the dict of the training contract (`to_dict`). `load` accepts
    files with only the required keys (model_config, train_config, labels, state_dict): the
    checkpoints written before this class existed, and minimal ones built by tests.
    """

    model_config: ModelConfig
    train_config: TrainConfig
    labels: list[str]
    state_dict: dict[str, torch.Tensor]
    backbone_config: dict[str, Any] | None = None
    epoch: int = 0
    best_dev_f1: float | None = None  # selection F1 (percent); None before the first main epoch
    best_epoch: int = 0
    averaged_last: int = 0  # >= 2 when the weights are the average of that many last epochs
    history: list[dict[str, Any]] = field(default_factory=list)
    card: TrainingCard | None = None
    resume: ResumeState | None = None

    # -- the on-disk dict -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        resume = self.resume
        return {
            "model_config": self.model_config.model_dump(mode="json"),
            "backbone_config": self.backbone_config,
            "train_config": self.train_config.model_dump(mode="json"),
            "labels": list(self.labels),
            "state_dict": self.state_dict,
            "optimizer": None if resume is None else resume.optimizer,
            "scheduler": None if resume is None else resume.scheduler,
            "scaler": None if resume is None else resume.scaler,
            "rng": None if resume is None else resume.rng,
            "epoch": self.epoch,
            # -1 is how the dict format always said "no main epoch yet"
            "best_dev_f1": -1.0 if self.best_dev_f1 is None else self.best_dev_f1,
            "best_epoch": self.best_epoch,
            "averaged_last": self.averaged_last,
            "history": self.history,
            "card": None if self.card is None else asdict(self.card),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        missing = {"model_config", "train_config", "labels", "state_dict"} - set(data)
        if missing:
            raise KeyError(f"not a training checkpoint: missing {sorted(missing)}")
        resume = None
        if data.get("optimizer") is not None:
            resume = ResumeState(
                optimizer=data["optimizer"],
                scheduler=data["scheduler"],
                scaler=data["scaler"],
                rng=data["rng"],
            )
        best = data.get("best_dev_f1")
        card = data.get("card")
        return cls(
            model_config=ModelConfig.model_validate(data["model_config"]),
            train_config=TrainConfig.model_validate(data["train_config"]),
            labels=list(data["labels"]),
            state_dict=data["state_dict"],
            backbone_config=data.get("backbone_config"),
            epoch=int(data.get("epoch", 0)),
            best_dev_f1=None if best is None or best < 0 else float(best),
            best_epoch=int(data.get("best_epoch", 0)),
            averaged_last=int(data.get("averaged_last", 0)),
            history=list(data.get("history") or []),
            card=None if card is None else TrainingCard.from_dict(card),
            resume=resume,
        )

    # -- files ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        save_checkpoint(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, map_location: str | torch.device = "cpu") -> TrainingState:
        return cls.from_dict(load_checkpoint(path, map_location))

    # -- the model --------------------------------------------------------------------------
    def build_model(self, map_location: str | torch.device = "cpu") -> BGAMNER:
        """The BGA-MNER model of this state, weights loaded, in eval mode.

        The text encoder's folder is an absolute path of the training machine (by default inside
        its venv); elsewhere the same architecture is built from the saved backbone config: the
        weights are all in the state_dict anyway.
        """
        config = self.model_config
        portable = self.backbone_config is not None and not Path(config.text_encoder).expanduser().is_dir()
        model = BGAMNER(
            config,
            num_labels=len(self.labels),
            backbone_config=self.backbone_config if portable else None,
        )
        model.load_state_dict(self.state_dict)
        return model.to(map_location).eval()


@dataclass(frozen=True)
class InferenceBundle:
    module: nn.Module  # TextOnlyInference (the text-only serving path) in eval mode, on CPU
    labels: list[str]
    max_length: int
    stride: int
    tokenizer_json: Path
    crf: CRFParams
    card: TrainingCard
    model_config: ModelConfig


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def files_sha256(paths: list[Path]) -> str:
    """One digest over the training files (in the given order), so a card names its exact data."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically: a crash while saving must never leave a truncated
    `last.pt` to resume from. `TrainingState.save` is the typed way in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (`TrainingState.load` is the typed way in)."""
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    return state


def load_model(
    checkpoint_dir: Path, map_location: str | torch.device = "cpu"
) -> tuple[BGAMNER, TrainingState]:
    """The best-on-dev model of a checkpoint directory, in eval mode, and its state."""
    state = TrainingState.load(Path(checkpoint_dir) / BEST_FILE, map_location)
    return state.build_model(map_location), state


def load_for_inference(checkpoint_dir: Path) -> InferenceBundle:
    """Everything export needs from a checkpoint directory (the best model on dev)."""
    checkpoint_dir = Path(checkpoint_dir)
    model, state = load_model(checkpoint_dir)
    tokenizer_json = checkpoint_dir / TOKENIZER_FILE
    if not tokenizer_json.is_file():
        raise FileNotFoundError(f"{tokenizer_json} is missing: the checkpoint cannot be served without it")
    if state.card is None:
        raise KeyError(f"{checkpoint_dir / BEST_FILE} has no card: it was not written by a finished epoch")
    return InferenceBundle(
        module=TextOnlyInference(model).eval(),
        labels=list(state.labels),
        max_length=state.train_config.data.max_length,
        stride=state.train_config.data.stride,
        tokenizer_json=tokenizer_json,
        crf=model.crf.to_params(),
        card=state.card,
        model_config=state.model_config,
    )
