"""Step 1: train BGA-MNER with `bga-mner train`, or reuse the checkpoint when config and data match."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bga_mner.demo.commands import run_child
from bga_mner.demo.layout import CONFIG_DIR, SAMPLE_TRAIN, STAMP_FILE, DemoError, DemoPaths, read_stamp
from bga_mner.paths import data_dir

if TYPE_CHECKING:
    from rich.console import Console


# The sample's sentences are laid out as the benchmark's files so the ordinary trainer reads them.
SAMPLE_LAYOUT_DATASET = "twitter2017"
SAMPLE_DEV_EVERY = 5  # every 5th sample sentence is held out (dev = test), the rest is trained on


@dataclass(frozen=True)
class TrainingPlan:
    """What `bga-mner train` is asked to do; its fingerprint decides whether a checkpoint is reusable."""

    source: str  # "twitter2017" or "sample"
    config: Path
    overrides: tuple[str, ...]
    data_dir: Path  # passed as data.data_dir; not in the fingerprint (the files' content is)
    data_files: tuple[Path, ...]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.source, self.config.read_text(encoding="utf-8"), *self.overrides):
            digest.update(part.encode())
            digest.update(b"\0")
        for path in self.data_files:
            digest.update(path.read_bytes())
            digest.update(b"\0")
        return digest.hexdigest()

    def argv(self, out: Path) -> list[str]:
        overrides = [f"data.data_dir={self.data_dir}", *self.overrides]
        return [
            sys.executable,
            "-m",
            "bga_mner.cli",
            "train",
            "--config",
            str(self.config),
            "--set",
            *overrides,
            "--out",
            str(out),
        ]


def split_conll_blocks(text: str) -> list[str]:
    """One block per sentence (its IMGID line and token lines), blank-line separated as in the benchmark."""
    return [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]


def write_sample_layout(sample: Path, root: Path) -> tuple[Path, ...]:
    """The shipped sample as `<root>/twitter2017/{train,valid,test}.txt`; returns the three files.

    Every `SAMPLE_DEV_EVERY`-th sentence is held out so the reported F1 is on sentences the model did
    not train on (only 10 of them: it shows the pipeline, not the model's quality).
    """
    blocks = split_conll_blocks(sample.read_text(encoding="utf-8"))
    held_out = [b for i, b in enumerate(blocks) if i % SAMPLE_DEV_EVERY == SAMPLE_DEV_EVERY - 1]
    train = [b for i, b in enumerate(blocks) if i % SAMPLE_DEV_EVERY != SAMPLE_DEV_EVERY - 1]
    folder = root / SAMPLE_LAYOUT_DATASET
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, part in (("train.txt", train), ("valid.txt", held_out), ("test.txt", held_out)):
        path = folder / name
        content = "\n\n".join(part) + "\n\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        files.append(path)
    return tuple(files)


def twitter2017_files(root: Path) -> tuple[Path, ...] | None:
    files = tuple(root / "twitter2017" / name for name in ("train.txt", "valid.txt", "test.txt"))
    return files if all(f.is_file() for f in files) else None


def plan_training(paths: DemoPaths, choice: str, quick: bool, extra: Sequence[str]) -> TrainingPlan:
    benchmark = data_dir()
    found = twitter2017_files(benchmark) if benchmark is not None else None
    if choice == "twitter2017" and found is None:
        raise DemoError(
            "--data twitter2017: no twitter2017/{train,valid,test}.txt under BGA_DATA_DIR or ../shared/data"
        )
    if found is not None and benchmark is not None and choice != "sample" and not quick:
        return TrainingPlan("twitter2017", CONFIG_DIR / "twitter2017.yaml", tuple(extra), benchmark, found)
    files = write_sample_layout(SAMPLE_TRAIN, paths.sample_data)
    overrides = ("optim.epochs=2", *extra) if quick else tuple(extra)
    return TrainingPlan("sample", CONFIG_DIR / "sample.yaml", overrides, paths.sample_data.resolve(), files)


def checkpoint_is_current(checkpoint: Path, fingerprint: str) -> bool:
    stamp = read_stamp(checkpoint / STAMP_FILE)
    return (
        stamp is not None
        and stamp.get("fingerprint") == fingerprint
        and (checkpoint / "checkpoint.pt").is_file()
        and (checkpoint / "results.json").is_file()
    )


def train_or_reuse(console: Console, paths: DemoPaths, plan: TrainingPlan, retrain: bool) -> dict[str, Any]:
    fingerprint = plan.fingerprint()
    described = (
        f"Twitter-2017 (short run; {plan.config})"
        if plan.source == "twitter2017"
        else f"the shipped sample {SAMPLE_TRAIN.name} ({plan.config})"
    )
    if not retrain and checkpoint_is_current(paths.checkpoint, fingerprint):
        console.print(f"reusing {paths.checkpoint}: trained on {described} with the same config and data")
    else:
        console.print(f"training BGA-MNER on {described} -> {paths.checkpoint}")
        shutil.rmtree(paths.checkpoint, ignore_errors=True)
        run_child(plan.argv(paths.checkpoint), "training")
        stamp = {"fingerprint": fingerprint, "source": plan.source, "config": str(plan.config)}
        (paths.checkpoint / STAMP_FILE).write_text(
            json.dumps({**stamp, "overrides": plan.overrides}), encoding="utf-8"
        )
    results: dict[str, Any] = json.loads((paths.checkpoint / "results.json").read_text(encoding="utf-8"))
    console.print(describe_results(results, plan.source))
    return results


def describe_results(results: dict[str, Any], source: str) -> str:
    """The trainer's results.json in one line, saying what the F1 is measured on."""
    dev_f1 = float(results.get("dev", {}).get("f1", float("nan")))
    test_f1 = float(results.get("test", {}).get("f1", float("nan")))
    epochs = f"best epoch {results.get('best_epoch')} of {results.get('epochs_run')}"
    if source == "twitter2017":
        return (
            f"Twitter-2017 dev F1 {dev_f1:.2f}, test F1 {test_f1:.2f} "
            f"(entity-level micro, {epochs}): a short demo run, not a benchmark result"
        )
    held_out = len(split_conll_blocks(SAMPLE_TRAIN.read_text(encoding="utf-8"))) // SAMPLE_DEV_EVERY
    return (
        f"F1 {dev_f1:.2f} on the {held_out} held-out sample sentences "
        f"(entity-level micro, {epochs}); the sample posts are the same sentences, mostly trained on"
    )
