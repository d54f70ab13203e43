"""The training loop: data, optimiser, schedule, AMP, dev selection, checkpoints, logs, resume.

One `Trainer.fit()` call runs optional pre-training epochs on extra data (no selection), then the
main epochs on the benchmark with early stopping on dev entity F1. Every epoch appends one JSON line
to `metrics.jsonl`, redraws `curves.png`, writes `last.pt` and, on a new best dev F1, `checkpoint.pt`.
At the end the best model is scored on dev and test (text-only, the serving path) into `results.json`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from bga_mner.preprocessing import SubwordEncoder
from training.checkpoint import (
    BEST_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    LAST_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    ModelCard,
    files_sha256,
    git_commit,
    load_checkpoint,
    save_checkpoint,
)
from training.config import DataSource, TrainConfig, dump_config
from training.data.conll import Sentence, read_split, split_path
from training.data.dataset import (
    Collator,
    EncodedExample,
    bucket_batches,
    encode_sentences,
    iterate_batches,
    load_tokenizer,
)
from training.data.images import image_loader
from training.data.labels import LABELS
from training.evaluation.predict import predict_tags
from training.evaluation.scores import EntityScores, score_tags
from training.model.bga_mner import BGAMNER

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    sentences: list[Sentence]
    examples: list[EncodedExample]


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device=cuda but no CUDA device is available")
    return torch.device(choice)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 where the GPU has it (no loss scaling needed), fp16 otherwise; None on CPU or with amp off."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: Path) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = resolve_device(config.runtime.device)
        self.amp_dtype = autocast_dtype(self.device, config.runtime.amp)
        if self.device.type == "cpu":
            torch.set_num_threads(config.runtime.num_threads)
        seed_everything(config.runtime.seed)
        self.rng = random.Random(config.runtime.seed)

        data = config.data
        self.data_dir = data.resolved_data_dir()
        self.tokenizer = load_tokenizer(config.model.text_encoder)
        self.encoder = SubwordEncoder(self.tokenizer, max_length=data.max_length, stride=data.stride)
        self.images = (
            image_loader(data.image_dir, config.model.image_encoder)
            if data.image_dir is not None and config.model.variant == "bga"
            else None
        )
        self.collator = Collator(self.encoder.pad_id, self.images)
        train_sources = [DataSource(dataset=data.dataset, split="train"), *data.extra_train]
        self.train = self._load(train_sources, data.limit_train)
        self.pretrain = self._load(data.pretrain, data.limit_train) if data.pretrain else None
        self.dev = self._load([DataSource(dataset=data.dataset, split="dev")], data.limit_eval)
        self.data_sha256 = files_sha256(
            [
                split_path(self.data_dir, source.dataset, source.split)
                for source in [*data.pretrain, *train_sources]
            ]
        )

        self.model = BGAMNER(config.model, num_labels=len(LABELS)).to(self.device)
        self.optimizer = self._optimizer()
        self.pretrain_epochs = data.pretrain_epochs if self.pretrain is not None else 0
        self.total_epochs = self.pretrain_epochs + config.optim.epochs
        steps = self._steps_per_epoch(self.train) * config.optim.epochs
        if self.pretrain is not None:
            steps += self._steps_per_epoch(self.pretrain) * self.pretrain_epochs
        self.scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            self.optimizer, math.ceil(config.optim.warmup_ratio * steps), max(1, steps)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        self.best_dev_f1 = -1.0
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []

    # -- data -------------------------------------------------------------------------------
    def _load(self, sources: Sequence[DataSource], limit: int | None) -> Split:
        sentences = [
            sentence
            for source in sources
            for sentence in read_split(self.data_dir, source.dataset, source.split)
        ]
        if limit is not None:
            sentences = sentences[:limit]
        return Split(sentences, encode_sentences(sentences, self.encoder))

    def _steps_per_epoch(self, split: Split) -> int:
        return math.ceil(len(split.examples) / self.config.optim.batch_size)

    def _optimizer(self) -> torch.optim.Optimizer:
        optim = self.config.optim
        learning_rates = {"encoder": optim.lr_encoder, "heads": optim.lr_heads, "crf": optim.lr_crf}
        groups: list[dict[str, Any]] = []
        for name, parameters in self.model.param_groups().items():
            trainable = [parameter for parameter in parameters if parameter.requires_grad]
            # Biases, norms and the CRF's scores are not weights to shrink towards zero.
            decayed = [p for p in trainable if p.dim() >= 2 and name != "crf"]
            plain = [p for p in trainable if p.dim() < 2 or name == "crf"]
            for params, decay in ((decayed, optim.weight_decay), (plain, 0.0)):
                if params:
                    groups.append(
                        {"params": params, "lr": learning_rates[name], "weight_decay": decay, "name": name}
                    )
        # The fused kernel exists on CPU too and is ~20x faster there than the default loop over
        # tensors (measured: 0.06 s against 1.4 s per step for MiniLM-L6 on 2 cores).
        return torch.optim.AdamW(groups, fused=True)

    # -- state ------------------------------------------------------------------------------
    def _state(self, *, with_optimizer: bool) -> dict[str, Any]:
        return {
            "model_config": self.config.model.model_dump(mode="json"),
            "backbone_config": self.model.text_encoder.backbone.config.to_dict(),
            "train_config": self.config.model_dump(mode="json"),
            "labels": list(LABELS),
            "state_dict": {key: value.detach().cpu() for key, value in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict() if with_optimizer else None,
            "scheduler": self.scheduler.state_dict() if with_optimizer else None,
            "scaler": self.scaler.state_dict() if with_optimizer else None,
            "rng": {"python": self.rng.getstate(), "torch": torch.get_rng_state()}
            if with_optimizer
            else None,
            "epoch": self.epoch,
            "best_dev_f1": self.best_dev_f1,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "card": self._card(self.best_dev_f1 if self.best_dev_f1 >= 0 else None, None).__dict__,
        }

    def _card(self, dev_f1: float | None, test_f1: float | None) -> ModelCard:
        return ModelCard(
            backbone=self.config.model.text_encoder,
            image_encoder=self.config.model.image_encoder if self.config.model.variant == "bga" else "none",
            variant=self.config.model.variant,
            dataset=self.config.data.dataset,
            training_data_sha256=self.data_sha256,
            dev_f1=dev_f1,
            test_f1=test_f1,
            git_commit=git_commit(),
            epoch=self.best_epoch,
        )

    def resume(self) -> None:
        """Continue from `last.pt`: weights, optimiser, schedule, RNG, epoch counter and best-so-far."""
        state = load_checkpoint(self.out_dir / LAST_FILE, self.device)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        self.epoch = int(state["epoch"])
        self.best_dev_f1 = float(state["best_dev_f1"])
        self.best_epoch = int(state["best_epoch"])
        self.history = list(state["history"])
        logger.info(
            "resumed from %s at epoch %d (best dev F1 %.2f)",
            self.out_dir / LAST_FILE,
            self.epoch,
            self.best_dev_f1,
        )

    # -- loop -------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _train_epoch(self, split: Split, description: str) -> dict[str, float]:
        self.model.train()
        batches = bucket_batches(
            [example.length for example in split.examples],
            self.config.optim.batch_size,
            shuffle=True,
            rng=self.rng,
        )
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        progress = tqdm(
            iterate_batches(split.examples, batches, self.collator),
            total=len(batches),
            desc=description,
            disable=not self.config.runtime.progress,
            leave=False,
        )
        for _, batch in progress:
            with self._autocast():
                output = self.model(batch.to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(output.loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss = float(output.loss.detach())
            if not math.isfinite(loss):
                raise FloatingPointError(f"{description}: the training loss became {loss}")
            sums["loss"] += loss
            for name, value in output.losses.items():
                sums[name] += float(value.detach())
            steps += 1
            progress.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
        return {name: total / max(1, steps) for name, total in sums.items()}

    def evaluate(self, split: Split, *, use_image: bool = False) -> EntityScores:
        predicted = predict_tags(
            self.model,
            split.sentences,
            split.examples,
            self.collator,
            batch_size=self.config.optim.eval_batch_size,
            device=self.device,
            use_image=use_image,
            autocast_dtype=self.amp_dtype,
        )
        return score_tags([sentence.labels for sentence in split.sentences], predicted)

    def _prepare_out_dir(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(self.out_dir / TOKENIZER_FILE))
        (self.out_dir / CONFIG_FILE).write_text(dump_config(self.config), encoding="utf-8")

    def _log_epoch(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        with (self.out_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        try:  # the plot is for people; a machine without matplotlib (a bare GPU box) still trains
            from training.curves import plot_curves
        except ImportError as error:
            logger.warning("curves.png not drawn: %s", error)
            return
        plot_curves(self.history, self.out_dir / CURVES_FILE)

    def fit(self) -> dict[str, Any]:
        """Train to the end (or early stop), then score the best checkpoint; returns `results.json`."""
        self._prepare_out_dir()
        optim = self.config.optim
        stale = max(0, self.epoch - max(self.best_epoch, self.pretrain_epochs))  # main epochs since the best
        fit_started, first_epoch = time.monotonic(), self.epoch
        while self.epoch < self.total_epochs:
            past_minimum = self.epoch >= self.pretrain_epochs + optim.min_epochs
            if past_minimum and stale >= optim.patience:
                logger.info("early stop: no better dev F1 for %d epochs", stale)
                break
            elapsed = time.monotonic() - fit_started
            epochs_here = self.epoch - first_epoch
            # Stop when one more epoch (as long as the average so far) would overrun the budget.
            budget = None if optim.max_minutes is None else 60 * optim.max_minutes
            if (
                past_minimum
                and budget is not None
                and epochs_here
                and elapsed * (epochs_here + 1) / epochs_here > budget
            ):
                logger.info("time budget of %.1f min reached after epoch %d", optim.max_minutes, self.epoch)
                break
            phase = "pretrain" if self.epoch < self.pretrain_epochs else "train"
            split = self.pretrain if phase == "pretrain" and self.pretrain is not None else self.train
            started = time.perf_counter()
            losses = self._train_epoch(split, f"{phase} epoch {self.epoch + 1}/{self.total_epochs}")
            train_seconds = time.perf_counter() - started
            dev = self.evaluate(self.dev, use_image=self.config.runtime.eval_use_image)
            self.epoch += 1
            improved = phase == "train" and dev.f1 > self.best_dev_f1
            if improved:
                self.best_dev_f1, self.best_epoch, stale = dev.f1, self.epoch, 0
            elif phase == "train":
                stale += 1
            record = {
                "epoch": self.epoch,
                "phase": phase,
                "train_loss": losses.pop("loss", float("nan")),
                "losses": losses,
                "dev_precision": dev.precision,
                "dev_recall": dev.recall,
                "dev_f1": dev.f1,
                "best_dev_f1": self.best_dev_f1,
                "lr_encoder": self.optimizer.param_groups[0]["lr"],
                "train_seconds": train_seconds,
                "train_examples_per_second": len(split.examples) / max(train_seconds, 1e-9),
                "eval_seconds": time.perf_counter() - started - train_seconds,
            }
            self._log_epoch(record)
            logger.info(
                "epoch %d (%s): loss %.4f, dev F1 %.2f (best %.2f @ %d), %.1f s",
                *(self.epoch, phase, record["train_loss"], dev.f1, self.best_dev_f1, self.best_epoch),
                train_seconds,
            )
            if improved:
                save_checkpoint(self.out_dir / BEST_FILE, self._state(with_optimizer=False))
            save_checkpoint(self.out_dir / LAST_FILE, self._state(with_optimizer=True))
        return self.final_results()

    def final_results(self) -> dict[str, Any]:
        """Reload the best checkpoint and score it on dev and test; write `results.json`."""
        best_path = self.out_dir / BEST_FILE
        if not best_path.is_file():
            raise RuntimeError(f"no {BEST_FILE} was written (no main-phase epoch ran)")
        state = load_checkpoint(best_path, self.device)
        self.model.load_state_dict(state["state_dict"])
        test = self._load(
            [DataSource(dataset=self.config.data.dataset, split="test")], self.config.data.limit_eval
        )
        results: dict[str, Any] = {
            "dataset": self.config.data.dataset,
            "variant": self.config.model.variant,
            "seed": self.config.runtime.seed,
            "best_epoch": state["best_epoch"],
            "epochs_run": self.epoch,
            "dev": self.evaluate(self.dev).to_dict(),
            "test": self.evaluate(test).to_dict(),
            "mean_train_seconds_per_epoch": _mean(
                [r["train_seconds"] for r in self.history if r["phase"] == "train"]
            ),
        }
        if self.images is not None and self.images.counts["loaded"]:
            results["test_with_image"] = self.evaluate(test, use_image=True).to_dict()
            self.images.log_summary("test")
        state["card"] = self._card(results["dev"]["f1"], results["test"]["f1"]).__dict__
        save_checkpoint(best_path, state)
        (self.out_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        return results


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def train(config: TrainConfig, out_dir: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train a model (or resume an interrupted run) into `out_dir` and return its results."""
    out_dir = Path(out_dir)
    if not resume and (out_dir / LAST_FILE).exists():
        raise FileExistsError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if not resume and out_dir.exists():
        for stale_file in (METRICS_FILE, CURVES_FILE):
            (out_dir / stale_file).unlink(missing_ok=True)
    trainer = Trainer(config, out_dir)
    if resume:
        if not (out_dir / LAST_FILE).is_file():
            raise FileNotFoundError(f"--resume: {out_dir / LAST_FILE} does not exist")
        trainer.resume()
    return trainer.fit()
