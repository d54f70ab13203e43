"""`curves.png`: training loss and dev F1 per epoch, redrawn after every epoch (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [record["train_loss"] for record in history], marker="o", label="total")
    for name in sorted({key for record in history for key in record.get("losses", {})}):
        values = [record.get("losses", {}).get(name, float("nan")) for record in history]
        loss_axis.plot(epochs, values, marker=".", linestyle="--", label=name)
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="mean loss per batch")
    loss_axis.legend(fontsize="small")
    f1_axis.plot(epochs, [record["dev_f1"] for record in history], marker="o", color="tab:green")
    pretrain = [record["epoch"] for record in history if record.get("phase") == "pretrain"]
    if pretrain:
        f1_axis.axvspan(
            min(pretrain) - 0.5, max(pretrain) + 0.5, color="grey", alpha=0.15, label="pre-training"
        )
        f1_axis.legend(fontsize="small")
    f1_axis.set(title="dev entity F1 (text-only)", xlabel="epoch", ylabel="F1 (%)")
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
