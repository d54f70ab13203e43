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

from bga_mner.preprocessing import SubwordEncoder
from training.averaging import LastEpochsAverage
from training.checkpoint import (
    BEST_FILE,
    CURVES_FILE,
    LAST_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    TRAIN_CONFIG_FILE,
    ResumeState,
    TrainingCard,
    TrainingState,
    files_sha256,
    git_commit,
)
from training.config import DataSource, TrainConfig, dump_config
from training.data.case_variants import CASES, CaseName, draw_cases, recase_all
from training.data.conll import DatasetName, Sentence, read_split, split_path
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
from training.distill import TargetKey, batch_targets, distill_loss, teacher_targets
from training.evaluation.predict import predict_tags
from training.evaluation.scores import EntityScores, score_tags
from training.model.bga_mner import BGAMNER
from training.schedule import build_scheduler

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


def autocast_dtype(device: torch.device, amp: bool, cpu_bf16: bool = False) -> torch.dtype | None:
    """Training precision: on CUDA bf16 where the GPU has it (no loss scaling needed), fp16 otherwise;
    on CPU bf16 only when asked (`runtime.cpu_bf16`); None means fp32."""
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 else None
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
        self.amp_dtype = autocast_dtype(self.device, config.runtime.amp, config.runtime.cpu_bf16)
        # Scoring on CPU stays fp32: the precision the exported model is served in.
        self.eval_dtype = self.amp_dtype if self.device.type == "cuda" else None
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
        self.case_probabilities: dict[CaseName, float] = {
            case: getattr(data.case_augment, case) for case in CASES if getattr(data.case_augment, case) > 0
        }
        self.train_cases = {
            case: _by_sentence(encode_sentences(recase_all(self.train.sentences, case), self.encoder))
            for case in self.case_probabilities
        }
        self.pretrain = self._load(data.pretrain, data.limit_train) if data.pretrain else None
        self.devs: dict[DatasetName, Split] = {
            name: self._load([DataSource(dataset=name, split="dev")], data.limit_eval)
            for name in data.benchmarks
        }
        self.data_sha256 = files_sha256(
            [
                split_path(self.data_dir, source.dataset, source.split)
                for source in [*data.pretrain, *train_sources]
            ]
        )

        # Soft targets of the teachers (an ensemble to distil), before the student exists in memory.
        self.targets = teacher_targets(
            config.distill.teachers,
            self.train.examples,
            self.collator,
            batch_size=config.optim.eval_batch_size,
            device=self.device,
        )
        self.model = BGAMNER(config.model, num_labels=len(LABELS)).to(self.device)
        self.optimizer = self._optimizer()
        self.pretrain_epochs = data.pretrain_epochs if self.pretrain is not None else 0
        self.total_epochs = self.pretrain_epochs + config.optim.epochs
        steps = self._steps_per_epoch(self.train) * config.optim.epochs
        if self.pretrain is not None:
            steps += self._steps_per_epoch(self.pretrain) * self.pretrain_epochs
        self.planned_steps = steps
        self.scheduler = build_scheduler(
            self.optimizer,
            kind=config.optim.schedule,
            warmup_ratio=config.optim.warmup_ratio,
            total_steps=steps,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.averager = LastEpochsAverage(config.optim.average_last)
        self.epoch = 0
        self.best_dev_f1 = -1.0
        self.best_epoch = 0
        self.averaged_last = 0
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
    def _state(self, *, with_optimizer: bool) -> TrainingState:
        resume = None
        if with_optimizer:
            resume = ResumeState(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng={"python": self.rng.getstate(), "torch": torch.get_rng_state()},
            )
        best = self.best_dev_f1 if self.best_dev_f1 >= 0 else None
        return TrainingState(
            model_config=self.config.model,
            train_config=self.config,
            labels=list(LABELS),
            state_dict={key: value.detach().cpu() for key, value in self.model.state_dict().items()},
            backbone_config=self.model.text_encoder.backbone.config.to_dict(),
            epoch=self.epoch,
            best_dev_f1=best,
            best_epoch=self.best_epoch,
            averaged_last=self.averaged_last,
            history=list(self.history),
            card=self._card(best, None),
            resume=resume,
        )

    def _card(self, dev_f1: float | None, test_f1: float | None) -> TrainingCard:
        return TrainingCard(
            backbone=self.config.model.text_encoder,
            image_encoder=self.config.model.image_encoder if self.config.model.variant == "bga" else "none",
            variant=self.config.model.variant,
            dataset=self.config.data.dataset,
            training_data_sha256=self.data_sha256,
            dev_f1=dev_f1,
            test_f1=test_f1,
            git_commit=git_commit(),
            epoch=self.best_epoch,
            benchmarks=tuple(self.config.data.benchmarks),
        )

    def resume(self) -> None:
        """Continue from `last.pt`: weights, optimiser, schedule, RNG, epoch counter and best-so-far."""
        state = TrainingState.load(self.out_dir / LAST_FILE, self.device)
        if state.resume is None:
            raise ValueError(f"{self.out_dir / LAST_FILE} holds no optimiser state to resume from")
        self.model.load_state_dict(state.state_dict)
        self.optimizer.load_state_dict(state.resume.optimizer)
        self.scheduler.load_state_dict(state.resume.scheduler)
        self.scaler.load_state_dict(state.resume.scaler)
        self.rng.setstate(state.resume.rng["python"])
        torch.set_rng_state(state.resume.rng["torch"])
        self.epoch = state.epoch
        self.best_dev_f1 = -1.0 if state.best_dev_f1 is None else state.best_dev_f1
        self.best_epoch = state.best_epoch
        self.averaged_last = state.averaged_last
        self.history = list(state.history)
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
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _epoch_examples(self, split: Split) -> tuple[list[EncodedExample], list[torch.Tensor | None]]:
        """The split's examples for one epoch and their distillation targets (None: none).

        Each main-split sentence is recased at random when `data.case_augment` asks for it (a fresh
        draw every epoch); a recased window keeps the targets of the window as written.
        """
        if split is not self.train:
            return split.examples, [None] * len(split.examples)
        as_written = _by_sentence(split.examples)
        cases: list[CaseName | None] = [None] * len(as_written)
        if self.case_probabilities:
            cases = draw_cases(len(as_written), self.case_probabilities, self.rng)
        examples: list[EncodedExample] = []
        targets: list[torch.Tensor | None] = []
        for index, case in enumerate(cases):
            for rank, example in enumerate((as_written if case is None else self.train_cases[case])[index]):
                examples.append(example)
                targets.append(self._target((index, rank), example))
        return examples, targets

    def _target(self, key: TargetKey, example: EncodedExample) -> torch.Tensor | None:
        target = self.targets.get(key)
        if target is None or target.shape[0] != len(example.word_index):
            return None  # no teachers, or a recased window that split into different words
        return target

    def _train_epoch(self, split: Split, description: str) -> dict[str, float]:
        self.model.train()
        examples, targets = self._epoch_examples(split)
        distilling = any(target is not None for target in targets)
        batches = bucket_batches(
            [example.length for example in examples],
            self.config.optim.batch_size,
            shuffle=True,
            rng=self.rng,
        )
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        progress = tqdm(
            iterate_batches(examples, batches, self.collator),
            total=len(batches),
            desc=description,
            disable=not self.config.runtime.progress,
            leave=False,
        )
        for indices, batch in progress:
            batch = batch.to(self.device)
            with self._autocast():
                output = self.model(batch)
            total = output.loss
            if distilling:
                soft = batch_targets([targets[i] for i in indices], batch.word_mask.shape[1], len(LABELS))
                kd = distill_loss(
                    self.model.crf, output.word_emissions, batch.word_mask, soft.to(self.device)
                )
                total = total + self.config.distill.weight * kd
                sums["distill"] += float(kd.detach())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss = float(total.detach())
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
            autocast_dtype=self.eval_dtype,
        )
        return score_tags([sentence.labels for sentence in split.sentences], predicted)

    def evaluate_devs(self) -> tuple[float, dict[str, EntityScores]]:
        """Every benchmark's dev scores and the selection F1: their mean (one benchmark: its F1)."""
        scores: dict[str, EntityScores] = {
            name: self.evaluate(split, use_image=self.config.runtime.eval_use_image)
            for name, split in self.devs.items()
        }
        return float(_mean([score.f1 for score in scores.values()]) or 0.0), scores

    def _prepare_out_dir(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(self.out_dir / TOKENIZER_FILE))
        (self.out_dir / TRAIN_CONFIG_FILE).write_text(dump_config(self.config), encoding="utf-8")

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
            dev_f1, devs = self.evaluate_devs()
            self.epoch += 1
            improved = phase == "train" and dev_f1 > self.best_dev_f1
            if improved:
                self.best_dev_f1, self.best_epoch, stale = dev_f1, self.epoch, 0
                self.averaged_last = 0
            elif phase == "train":
                stale += 1
            if phase == "train":
                self.averager.add(self.model.state_dict())
            primary = devs[self.config.data.dataset]
            record = {
                "epoch": self.epoch,
                "phase": phase,
                "train_loss": losses.pop("loss", float("nan")),
                "losses": losses,
                "dev_precision": primary.precision,
                "dev_recall": primary.recall,
                "dev_f1": dev_f1,
                "dev_f1_by_dataset": {name: score.f1 for name, score in devs.items()},
                "best_dev_f1": self.best_dev_f1,
                "lr_encoder": self.optimizer.param_groups[0]["lr"],
                "train_seconds": train_seconds,
                "train_examples_per_second": len(split.examples) / max(train_seconds, 1e-9),
                "eval_seconds": time.perf_counter() - started - train_seconds,
            }
            self._log_epoch(record)
            logger.info(
                "epoch %d (%s): loss %.4f, dev F1 %.2f (best %.2f @ %d), %.1f s",
                *(self.epoch, phase, record["train_loss"], dev_f1, self.best_dev_f1, self.best_epoch),
                train_seconds,
            )
            if improved:
                self._state(with_optimizer=False).save(self.out_dir / BEST_FILE)
            self._state(with_optimizer=True).save(self.out_dir / LAST_FILE)
        if self.epoch < self.total_epochs:
            logger.warning(
                "stopped after %d of %d planned epochs: the learning rate did not reach 0 "
                "(plan optim.epochs to what the run trains)",
                self.epoch,
                self.total_epochs,
            )
        average = self._try_average()
        return self.final_results(average=average, wall_seconds=time.monotonic() - fit_started)

    def _try_average(self) -> dict[str, Any] | None:
        """Score the average of the last `optim.average_last` epochs on dev; keep it if it is better."""
        if not self.averager.ready:
            return None
        self.model.load_state_dict(self.averager.average())
        dev_f1, devs = self.evaluate_devs()
        kept = bool(dev_f1 > self.best_dev_f1)  # seqeval's scores are numpy floats
        logger.info(
            "average of the last %d epochs: dev F1 %.2f against the best epoch's %.2f: %s",
            self.averager.count,
            dev_f1,
            self.best_dev_f1,
            "kept" if kept else "not kept",
        )
        if kept:
            self.best_dev_f1, self.best_epoch = dev_f1, self.epoch
            self.averaged_last = self.averager.count
            # last.pt keeps the last epoch's own weights: a resumed run trains on from those.
            self._state(with_optimizer=False).save(self.out_dir / BEST_FILE)
        return {
            "epochs": self.averager.count,
            "dev_f1": dev_f1,
            "dev_f1_by_dataset": {name: score.f1 for name, score in devs.items()},
            "kept": kept,
        }

    def final_results(
        self, *, average: dict[str, Any] | None = None, wall_seconds: float | None = None
    ) -> dict[str, Any]:
        """Reload the best checkpoint and score it on every benchmark's dev and test; write `results.json`.

        `dev` and `test` are the primary benchmark's (`data.dataset`); `benchmarks` holds each
        benchmark's, with the case-transformed copies when `runtime.eval_casing` is set.
        """
        best_path = self.out_dir / BEST_FILE
        if not best_path.is_file():
            raise RuntimeError(f"no {BEST_FILE} was written (no main-phase epoch ran)")
        state = TrainingState.load(best_path, self.device)
        self.model.load_state_dict(state.state_dict)
        benchmarks: dict[str, dict[str, Any]] = {}
        test_scores: dict[str, EntityScores] = {}
        for name, dev in self.devs.items():
            test = self._load([DataSource(dataset=name, split="test")], self.config.data.limit_eval)
            test_scores[name] = self.evaluate(test)
            entry: dict[str, Any] = {"dev": self.evaluate(dev).to_dict(), "test": test_scores[name].to_dict()}
            if self.config.runtime.eval_casing:
                entry["casing"] = {
                    split_name: {case: self.evaluate(self._recased(split, case)).to_dict() for case in CASES}
                    for split_name, split in (("dev", dev), ("test", test))
                }
            benchmarks[name] = entry
        primary = self.config.data.dataset
        results: dict[str, Any] = {
            "dataset": primary,
            "variant": self.config.model.variant,
            "seed": self.config.runtime.seed,
            "best_epoch": state.best_epoch,
            "averaged_last": state.averaged_last,
            "epochs_run": self.epoch,
            "planned_epochs": self.total_epochs,
            "selection_dev_f1": state.best_dev_f1,
            "dev": benchmarks[primary]["dev"],
            "test": benchmarks[primary]["test"],
            "benchmarks": benchmarks,
            "average": average,
            "mean_train_seconds_per_epoch": _mean(
                [r["train_seconds"] for r in self.history if r["phase"] == "train"]
            ),
            "wall_seconds": wall_seconds,
            "num_threads": self.config.runtime.num_threads if self.device.type == "cpu" else None,
            "train_precision": _precision_name(self.amp_dtype),
            "distilled_from": [str(path) for path in self.config.distill.teachers],
        }
        if self.images is not None and self.images.counts["loaded"]:
            test = self._load([DataSource(dataset=primary, split="test")], self.config.data.limit_eval)
            results["test_with_image"] = self.evaluate(test, use_image=True).to_dict()
            self.images.log_summary("test")
        # The card's test F1 is the primary benchmark's, as export has always shown it.
        state.card = self._card(results["dev"]["f1"], results["test"]["f1"])
        state.save(best_path)
        (self.out_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        return results

    def _recased(self, split: Split, case: CaseName) -> Split:
        sentences = recase_all(split.sentences, case)
        return Split(sentences, encode_sentences(sentences, self.encoder))


def _precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")


def _by_sentence(examples: Sequence[EncodedExample]) -> list[list[EncodedExample]]:
    """Examples grouped by their sentence (a sentence longer than one window has several)."""
    count = 1 + max((example.sentence_index for example in examples), default=-1)
    grouped: list[list[EncodedExample]] = [[] for _ in range(count)]
    for example in examples:
        grouped[example.sentence_index].append(example)
    return grouped


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
