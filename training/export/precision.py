"""Which precision a CPU export serves: the cheapest graph that costs at most 0.3 dev F1 against fp32.

int8 dynamic quantisation is ~1.8x faster on CPU and usually costs a few hundredths of a point, but
not always (a model or data set can lose more), so the choice is measured, not assumed. The
candidates are tried cheapest first: all MatMuls in int8 (``INT8``), then int8 with the encoder's
feed-forward outputs kept in fp32 (``INT8_FFN_FP32``, `quantize.ffn_output_matmuls`), then fp32. Each
is scored on the checkpoint's dev split through the serving decoder (``served_f1``) until one passes,
and the numbers go into the manifest's card (``card.extra["precision_choice"]``) whatever is chosen.
Without the dev data the export cannot check int8 and serves fp32, saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bga_mner.inference.onnx_local import OnnxBackend

if TYPE_CHECKING:
    from bga_mner.decoding import CRFParams
    from bga_mner.preprocessing import SubwordEncoder
    from training.data.conll import Sentence

INT8_MAX_DEV_F1_DROP = 0.3  # F1 points (percent), dev split
FP32 = "fp32"
INT8 = "int8-dynamic"
INT8_FFN_FP32 = "int8-dynamic-ffn-fp32"  # int8 but the encoder's feed-forward output MatMuls


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # FP32, INT8 or INT8_FFN_FP32
    reason: str
    dev_f1: dict[str, float] = field(default_factory=dict)  # per candidate precision
    test_f1: dict[str, float] = field(default_factory=dict)
    dev_sentences: int = 0
    max_dev_f1_drop: float = INT8_MAX_DEV_F1_DROP

    def to_card(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in ({}, None)}


def read_eval_split(dataset: str, split: str, data_dir: Path | None) -> list[Sentence] | None:
    """The split of the checkpoint's data set, or None when it is not on this machine."""
    from bga_mner.paths import data_dir as default_data_dir
    from training.data.conll import read_split

    root = data_dir or default_data_dir()
    if root is None:
        return None
    try:
        return read_split(Path(root), dataset, split)  # type: ignore[arg-type]
    except (FileNotFoundError, KeyError, ValueError):
        return None


def choose_precision(
    fp32_path: Path,
    candidates: Sequence[tuple[str, Path]],
    *,
    dev: list[Sentence] | None,
    test: list[Sentence] | None,
    encoder: SubwordEncoder,
    labels: list[str],
    crf: CRFParams,
    threads: int = 2,
) -> PrecisionChoice:
    """The first of ``candidates`` (name, graph; cheapest first) whose dev F1 is within
    ``INT8_MAX_DEV_F1_DROP`` of fp32's, else fp32. Candidates after the chosen one are not scored;
    test F1 is recorded for every graph scored, never used."""
    from training.export.served_f1 import served_score

    if not dev:
        return PrecisionChoice(FP32, "no dev split on this machine to check int8 against fp32")

    def score(path: Path, sentences: list[Sentence]) -> float:
        return served_score(OnnxBackend(path, threads=threads).infer, sentences, encoder, labels, crf).f1

    dev_f1 = {FP32: score(fp32_path, dev)}
    test_f1 = {FP32: score(fp32_path, test)} if test else {}
    precision, reason = FP32, ""
    for name, path in candidates:
        dev_f1[name] = score(path, dev)
        if test:
            test_f1[name] = score(path, test)
        drop = dev_f1[FP32] - dev_f1[name]
        if drop <= INT8_MAX_DEV_F1_DROP:
            precision = name
            reason = f"{name} dev F1 {drop:.2f} below fp32 (at most {INT8_MAX_DEV_F1_DROP} allowed)"
            break
        reason += f"{name} loses {drop:.2f} dev F1 (> {INT8_MAX_DEV_F1_DROP}); "
    if precision == FP32:
        reason += "fp32 served"
    rounded = {k: round(v, 3) for k, v in dev_f1.items()}
    return PrecisionChoice(precision, reason, rounded, {k: round(v, 3) for k, v in test_f1.items()}, len(dev))
