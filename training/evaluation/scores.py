"""Entity-level micro P/R/F1 and per-type scores, computed by seqeval in its default (lenient) mode.

The published Twitter-2015/2017 numbers come from seqeval's default mode, in which an orphan `I-X`
(after `O` or another type) opens a new entity; that is what makes the Twitter-2015 test set count
5,207 entities rather than its 5,072 `B-` tags. Using seqeval itself, not a re-implementation, keeps
the denominators identical to the papers'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities


@dataclass(frozen=True)
class TypeScore:
    precision: float
    recall: float
    f1: float
    support: int  # gold entities of this type


@dataclass(frozen=True)
class EntityScores:
    """Micro-averaged scores (in percent, as the papers report them) plus per-type scores."""

    precision: float
    recall: float
    f1: float
    gold_entities: int
    predicted_entities: int
    correct_entities: int
    per_type: dict[str, TypeScore]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A plain-text table for the terminal: one row per type and the micro average."""
        rows = [f"{'type':<8}{'P':>8}{'R':>8}{'F1':>8}{'support':>10}"]
        for name, score in sorted(self.per_type.items()):
            rows.append(
                f"{name:<8}{score.precision:>8.2f}{score.recall:>8.2f}{score.f1:>8.2f}{score.support:>10d}"
            )
        rows.append(
            f"{'micro':<8}{self.precision:>8.2f}{self.recall:>8.2f}{self.f1:>8.2f}{self.gold_entities:>10d}"
        )
        return "\n".join(rows)


def _entity_set(sequences: Sequence[Sequence[str]]) -> set[tuple[int, str, int, int]]:
    return {
        (index, entity_type, start, end)
        for index, tags in enumerate(sequences)
        for entity_type, start, end in get_entities(list(tags))
    }


def score_tags(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> EntityScores:
    """Score predicted BIO tag sequences against gold ones (same sentences, same lengths)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted, strict=True)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(
                f"sentence {index}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted"
            )
    gold_lists = [list(tags) for tags in gold]
    predicted_lists = [list(tags) for tags in predicted]
    gold_entities = _entity_set(gold_lists)
    predicted_entities = _entity_set(predicted_lists)
    report: dict[str, dict[str, float]] = {}
    if gold_entities or predicted_entities:  # seqeval averages over nothing (with warnings) otherwise
        report = classification_report(gold_lists, predicted_lists, output_dict=True, zero_division=0)
    correct = len(gold_entities & predicted_entities)
    per_type = {
        name: TypeScore(
            precision=100.0 * values["precision"],
            recall=100.0 * values["recall"],
            f1=100.0 * values["f1-score"],
            support=int(values["support"]),
        )
        for name, values in report.items()
        if not name.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return EntityScores(
        precision=100.0 * micro["precision"],
        recall=100.0 * micro["recall"],
        f1=100.0 * micro["f1-score"],
        gold_entities=len(gold_entities),
        predicted_entities=len(predicted_entities),
        correct_entities=correct,
        per_type=per_type,
    )
