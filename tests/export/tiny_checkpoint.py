"""A real BGA-MNER checkpoint directory, small enough to build and export in seconds.

The model is the project's BGAMNER (sampler, generator, fusion, CRF: the whole text-only serving path),
on a randomly initialised 2-layer BERT that uses the real all-MiniLM-L6-v2 tokenizer, saved in the
trainer's checkpoint format so ``training.checkpoint.load_for_inference`` reads it like any other. The
classifier and CRF are given large random weights so the posts decode into many entities of every type:
parity on all-"O" output would prove nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tests.fixtures.text_encoder import tiny_text_encoder
from training.checkpoint import BEST_FILE, TOKENIZER_FILE, TrainingCard, save_checkpoint
from training.config import DataConfig, TrainConfig
from training.data.labels import LABELS
from training.model.bga_mner import BGAMNER
from training.model.config import ModelConfig

MAX_LENGTH = 24  # small, so ordinary test posts already need several windows
STRIDE = 6


def build_tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Write ``checkpoint.pt`` + ``tokenizer.json`` into ``directory``; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    encoder = tiny_text_encoder(directory / "text_encoder", seed)
    model_config = ModelConfig.model_validate(
        {
            "text_encoder": str(encoder),
            "hidden": 32,
            "casing_dim": 8,
            "fusion_heads": 2,
            "dropout": 0.0,
            "generator": {
                "image_queries": 4,
                "text_queries": 4,
                "heads": 2,
                "ffn_dim": 64,
                "levels": [-1, -2],
            },
        }
    )
    torch.manual_seed(seed)
    model = BGAMNER(model_config, num_labels=len(LABELS)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 2.0)
        model.classifier.bias.normal_(0.0, 1.0)
        for name, parameter in model.crf.named_parameters():
            del name
            parameter.normal_(0.0, 0.5)
    train_config = TrainConfig(data=DataConfig(max_length=MAX_LENGTH, stride=STRIDE), model=model_config)
    card = TrainingCard(
        backbone="tiny-random-bert (test)",
        image_encoder=model_config.image_encoder,
        variant=model_config.variant,
        dataset="none (random weights)",
        training_data_sha256="0" * 64,
        dev_f1=50.0,  # percent, as the trainer writes it
        test_f1=25.0,
        git_commit=None,
        epoch=0,
    )
    state = {
        "model_config": model_config.model_dump(mode="json"),
        "train_config": train_config.model_dump(mode="json"),
        "labels": list(LABELS),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "card": card.__dict__,
    }
    save_checkpoint(directory / BEST_FILE, state)
    shutil.copy(encoder / "tokenizer.json", directory / TOKENIZER_FILE)
    return directory
