from __future__ import annotations

from pathlib import Path

import pytest

from training.data.conll import read_split
from training.evaluation import score_tags


def test_hand_computed_scores_with_orphan_i_tags() -> None:
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC"],  # PER(0,1), LOC(3)
        ["O", "I-ORG", "I-ORG", "O", "B-MISC"],  # orphan I-ORG opens ORG(1,2) in lenient mode; MISC(4)
    ]
    predicted = [
        ["B-PER", "I-PER", "O", "B-ORG"],  # PER correct; ORG(3) wrong type
        ["O", "B-ORG", "I-ORG", "O", "O"],  # ORG(1,2) correct (same span as the orphan); MISC missed
    ]
    scores = score_tags(gold, predicted)
    # gold 4 entities, predicted 3, correct 2
    assert (scores.gold_entities, scores.predicted_entities, scores.correct_entities) == (4, 3, 2)
    assert scores.precision == pytest.approx(100 * 2 / 3)
    assert scores.recall == pytest.approx(50.0)
    assert scores.f1 == pytest.approx(100 * 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert scores.per_type["PER"].f1 == pytest.approx(100.0)
    assert scores.per_type["ORG"].precision == pytest.approx(50.0)
    assert scores.per_type["ORG"].recall == pytest.approx(100.0)
    assert scores.per_type["LOC"].f1 == 0.0
    assert scores.per_type["MISC"].support == 1


def test_orphan_after_other_type_starts_new_entity() -> None:
    scores = score_tags([["B-PER", "I-LOC"]], [["B-PER", "B-LOC"]])
    assert scores.gold_entities == 2
    assert scores.f1 == pytest.approx(100.0)


def test_no_entities_anywhere_scores_zero_without_warnings() -> None:
    scores = score_tags([["O", "O"]], [["O", "O"]])
    assert (scores.f1, scores.gold_entities, scores.per_type) == (0.0, 0, {})


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="sentence 0"):
        score_tags([["O", "O"]], [["O"]])


def test_table_lists_types_and_micro() -> None:
    table = score_tags([["B-PER", "O"]], [["B-PER", "O"]]).table()
    assert "PER" in table and "micro" in table and "100.00" in table


@pytest.mark.data
@pytest.mark.parametrize(
    ("dataset", "split", "entities", "per_type"),
    [
        ("twitter2015", "test", 5207, {"PER": 1873, "LOC": 1720, "ORG": 860, "MISC": 754}),
        ("twitter2015", "dev", 1594, {"PER": 567, "LOC": 543, "ORG": 251, "MISC": 233}),
        ("twitter2017", "test", 1351, {"PER": 621, "LOC": 178, "ORG": 395, "MISC": 157}),
        ("twitter2017", "dev", 1324, {"PER": 626, "LOC": 173, "ORG": 375, "MISC": 150}),
    ],
)
def test_published_denominators(
    benchmark_dir: Path, dataset: str, split: str, entities: int, per_type: dict[str, int]
) -> None:
    gold = [sentence.labels for sentence in read_split(benchmark_dir, dataset, split)]  # type: ignore[arg-type]
    all_o = [["O"] * len(tags) for tags in gold]
    scores = score_tags(gold, all_o)
    assert scores.gold_entities == entities
    assert {name: score.support for name, score in scores.per_type.items()} == per_type
    assert score_tags(gold, gold).f1 == pytest.approx(100.0)
