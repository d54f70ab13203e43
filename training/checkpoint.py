"""Checkpoint directories: what training writes and what export and evaluation read back.

A checkpoint directory holds `checkpoint.pt` (the best model on dev: the one export ships),
`last.pt` (the latest epoch with optimiser, scheduler and RNG state, for `--resume`),
`tokenizer.json` (the text encoder's fast tokenizer, the file serving encodes with), plus
`config.yaml`, `metrics.jsonl` and `curves.png` for people. `checkpoint.pt` keeps the keys of
the training contract; its `optimizer` entry is None to keep the shipped file small.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
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
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class ModelCard:
    """What the exported manifest's `card` needs to say about how the model was trained."""

    backbone: str
    image_encoder: str
    variant: str
    dataset: str
    training_data_sha256: str
    dev_f1: float | None
    test_f1: float | None
    git_commit: str | None
    epoch: int


@dataclass(frozen=True)
class InferenceBundle:
    module: nn.Module  # TextOnlyInference (the text-only serving path) in eval mode, on CPU
    labels: list[str]
    max_length: int
    stride: int
    tokenizer_json: Path
    crf: CRFParams
    card: ModelCard
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
    """Write atomically: a crash while saving must never leave a truncated `last.pt` to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    return state


def build_model(state: dict[str, Any], map_location: str | torch.device = "cpu") -> BGAMNER:
    """The BGA-MNER model of a checkpoint state, weights loaded, in eval mode."""
    config = ModelConfig.model_validate(state["model_config"])
    # The text encoder's folder is an absolute path of the training machine (by default inside its
    # venv); elsewhere, build the same architecture from the saved config: the weights are all in
    # the state_dict anyway.
    backbone_config = state.get("backbone_config")
    portable = backbone_config is not None and not Path(config.text_encoder).expanduser().is_dir()
    model = BGAMNER(
        config, num_labels=len(state["labels"]), backbone_config=backbone_config if portable else None
    )
    model.load_state_dict(state["state_dict"])
    return model.to(map_location).eval()


def load_model(
    checkpoint_dir: Path, map_location: str | torch.device = "cpu"
) -> tuple[BGAMNER, dict[str, Any]]:
    state = load_checkpoint(Path(checkpoint_dir) / BEST_FILE, map_location)
    return build_model(state, map_location), state


def load_for_inference(checkpoint_dir: Path) -> InferenceBundle:
    """Everything export needs from a checkpoint directory (the best model on dev)."""
    checkpoint_dir = Path(checkpoint_dir)
    model, state = load_model(checkpoint_dir)
    train_config = TrainConfig.model_validate(state["train_config"])
    tokenizer_json = checkpoint_dir / TOKENIZER_FILE
    if not tokenizer_json.is_file():
        raise FileNotFoundError(f"{tokenizer_json} is missing: the checkpoint cannot be served without it")
    card = ModelCard(**state["card"])
    return InferenceBundle(
        module=TextOnlyInference(model).eval(),
        labels=list(state["labels"]),
        max_length=train_config.data.max_length,
        stride=train_config.data.stride,
        tokenizer_json=tokenizer_json,
        crf=model.crf.to_params(),
        card=card,
        model_config=ModelConfig.model_validate(state["model_config"]),
    )
