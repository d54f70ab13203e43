"""The typed training configuration: YAML files plus `--set dotted.key=value` overrides.

One pydantic model holds every knob of a run (data, model, optimisation, runtime) so that a
checkpoint can store the exact configuration it was trained with and a sweep can vary any field
by name. Unknown keys are errors: a misspelt override must not silently train the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bga_mner.paths import data_dir as default_data_dir
from training.data.conll import DatasetName, SplitName
from training.model.config import ModelConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """One split of one data set, e.g. WNUT-16 train as extra training data."""

    dataset: DatasetName
    split: SplitName


class CaseAugmentConfig(_Strict):
    """Training-time casing augmentation: each epoch, each training sentence is independently shown
    all-lowercase, all-uppercase or title-cased with these probabilities (else as written).

    Posts are often typed all in lower case or in capitals, and the uncased backbone sees casing only
    through the casing feature, so a model trained on edited text alone leans on capitals that real
    posts may not have. The words' subwords are unchanged for an uncased tokenizer; only their
    casing classes change.
    """

    lower: float = Field(default=0.0, ge=0.0, le=1.0)
    upper: float = Field(default=0.0, ge=0.0, le=1.0)
    title: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> CaseAugmentConfig:
        if self.lower + self.upper + self.title > 1.0:
            raise ValueError("case_augment probabilities must sum to at most 1")
        return self

    @property
    def active(self) -> bool:
        return self.lower + self.upper + self.title > 0.0


class DataConfig(_Strict):
    dataset: DatasetName = "twitter2015"
    data_dir: Path | None = None  # None: bga_mner.paths.data_dir() (BGA_DATA_DIR or ../shared/data)
    image_dir: Path | None = None  # <image_dir>/<IMGID>.jpg; None: no images (all masked out)
    # Extra text-only sentences mixed into every training epoch (joint training).
    extra_train: list[DataSource] = Field(default_factory=list)
    # Sentences trained on for `pretrain_epochs` before the main data (sequential pre-training).
    pretrain: list[DataSource] = Field(default_factory=list)
    pretrain_epochs: int = 0
    # Further benchmarks scored like `dataset`: their dev F1 joins the selection (the mean over all
    # benchmarks' dev F1) and their test F1 is reported. For a model trained on both benchmarks'
    # training splits, so that neither benchmark alone decides which epoch is kept.
    eval_datasets: list[DatasetName] = Field(default_factory=list)
    case_augment: CaseAugmentConfig = Field(default_factory=CaseAugmentConfig)
    max_length: int = 128
    stride: int = 32
    limit_train: int | None = None  # first N training sentences only (smoke tests, timing)
    limit_eval: int | None = None

    @model_validator(mode="after")
    def _never_train_on_test(self) -> DataConfig:
        """No test split of any data set is ever training data: a test split trained on (even
        another data set's, such as WNUT-16 test) makes every number measured with it void."""
        for source in (*self.extra_train, *self.pretrain):
            if source.split == "test":
                raise ValueError(f"{source.dataset} test is a test split: it must never be training data")
        return self

    @property
    def benchmarks(self) -> list[DatasetName]:
        """The data sets whose dev selects and whose test is reported: `dataset` first."""
        return [self.dataset, *[name for name in self.eval_datasets if name != self.dataset]]

    def resolved_data_dir(self) -> Path:
        path = self.data_dir or default_data_dir()
        if path is None:
            raise FileNotFoundError("no data directory: set BGA_DATA_DIR or data.data_dir")
        return path


class OptimConfig(_Strict):
    epochs: int = 20
    batch_size: int = 16
    eval_batch_size: int = 64
    lr_encoder: float = 5e-5  # the pretrained text (and image) encoder
    lr_heads: float = 1e-3  # everything trained from scratch except the CRF
    lr_crf: float = 5e-2  # CRF transitions need a much larger step to move off zero in few epochs
    weight_decay: float = 0.01
    # The learning rate warms up linearly over `warmup_ratio` of all planned steps (pre-training and
    # `epochs` main epochs), then decays to 0 at the last planned step: linearly or along a cosine.
    # Plan `epochs` to what the run will really train: a run cut early by `patience` or `max_minutes`
    # is taken at a learning rate that never annealed.
    schedule: Literal["linear", "cosine"] = "linear"
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    max_grad_norm: float = 1.0
    patience: int = 5  # epochs without a better dev F1 before stopping
    min_epochs: int = 1
    # Average the weights of the last N main epochs at the end and keep the average when its dev F1
    # beats the best single epoch's (0: off). Cheap: N weight copies in memory and one dev pass.
    average_last: int = Field(default=0, ge=0)
    # Wall-clock budget: no new epoch starts after this many minutes (the best-so-far is still
    # scored). Lets a run on a shared or lent machine end on time instead of being killed.
    max_minutes: float | None = None


class RuntimeConfig(_Strict):
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 with a grad scaler)
    # bf16 autocast for the training steps on CPU (much faster where the CPU has AVX512-BF16);
    # evaluation on CPU stays fp32, the precision the exported model is served in.
    cpu_bf16: bool = False
    num_threads: int = 2
    progress: bool = True
    eval_use_image: bool = False  # select on the text-only path (what serving runs) by default
    # At the end, also score the selected model on lowercased, uppercased and title-cased copies of
    # every benchmark's dev and test set (results.json "casing").
    eval_casing: bool = False


class DistillConfig(_Strict):
    """Distil an ensemble into this run's model (`training.distill`): the teachers' averaged CRF
    marginals on the training sentences are soft targets next to the gold labels. The teachers are
    checkpoint directories; the student is whatever `model` says (the serving size)."""

    teachers: list[Path] = Field(default_factory=list)
    weight: float = Field(default=1.0, ge=0.0)  # loss = CRF NLL + weight * cross-entropy to the teachers


class TrainConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value), the value parsed as YAML (numbers, booleans, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not key=value")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


# The shipped recipes are package data (the checkout's `configs/` links here): an installed
# `bga-mner train --config twitter2017-bga` finds them by name, without a checkout.
RECIPES = Path(__file__).resolve().parent / "configs"


def resolve_config(path: Path) -> Path:
    """``path`` when it exists; else a shipped recipe named like it (``twitter2017-bga`` or
    ``configs/twitter2017-bga.yaml``); else ``path`` (whose read then fails naming it)."""
    if path.exists():
        return path
    recipe = RECIPES / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    return recipe if recipe.is_file() else path


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (a file, or a shipped recipe by name; or start from defaults) and apply
    `key=value` overrides in order."""
    tree: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(resolve_config(Path(path)).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        tree = loaded or {}
    for override in overrides:
        key, value = parse_override(override)
        _set_dotted(tree, key, value)
    return TrainConfig.model_validate(tree)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
