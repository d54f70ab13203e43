from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.data.conll import WNUT16_TYPE_MAP, read_split, read_twitter_mner, read_wnut16
from training.data.labels import ENTITY_TYPES, LABELS

TWITTER_SAMPLE = (
    "IMGID:1015799\nRT\tO\n@Jay\tO\nKevin\tB-PER\nDurant\tI-PER\nat\tO\nMSG\tB-OTHER\n\n"
    "IMGID:42\n\u00a0\tO\nNew\tB-LOC\nYork\tI-LOC\n"  # a lone NBSP token, and no trailing blank line
)


def test_twitter_reader_maps_other_to_misc_and_keeps_image_ids(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text(TWITTER_SAMPLE, encoding="utf-8")
    sentences = read_twitter_mner(path)
    assert [s.image_id for s in sentences] == ["1015799", "42"]
    assert sentences[0].tokens == ("RT", "@Jay", "Kevin", "Durant", "at", "MSG")
    assert sentences[0].labels == ("O", "O", "B-PER", "I-PER", "O", "B-MISC")
    assert sentences[1].tokens == ("\u00a0", "New", "York")
    assert sentences[1].labels == ("O", "B-LOC", "I-LOC")


def test_wnut16_reader_maps_all_ten_types(tmp_path: Path) -> None:
    lines = []
    for index, wnut_type in enumerate(WNUT16_TYPE_MAP):
        lines += [f"w{index}a\tB-{wnut_type}", f"w{index}b\tI-{wnut_type}", "x\tO", ""]
    path = tmp_path / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentences = read_wnut16(path)
    assert len(sentences) == 10
    assert all(s.image_id is None for s in sentences)
    for sentence, wnut_type in zip(sentences, WNUT16_TYPE_MAP, strict=True):
        mapped = WNUT16_TYPE_MAP[wnut_type]
        assert sentence.labels == (f"B-{mapped}", f"I-{mapped}", "O")
    assert set(WNUT16_TYPE_MAP.values()) == set(ENTITY_TYPES)


def test_unknown_labels_and_malformed_lines_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("IMGID:1\nfoo\tB-ANIMAL\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: unknown label 'B-ANIMAL'"):
        read_twitter_mner(path)
    path.write_text("IMGID:1\nfoo O\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected token<TAB>label"):
        read_twitter_mner(path)


def test_label_order_is_the_contract() -> None:
    assert LABELS == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


# Tweets, tokens and B- counts per type, from shared/data/README.md (OTHER read as MISC).
README_COUNTS = {
    ("twitter2015", "train"): (4000, 64439, {"PER": 2217, "LOC": 2091, "ORG": 927, "MISC": 931}),
    ("twitter2015", "dev"): (1000, 16178, {"PER": 552, "LOC": 522, "ORG": 247, "MISC": 220}),
    ("twitter2015", "test"): (3257, 52822, {"PER": 1816, "LOC": 1697, "ORG": 839, "MISC": 720}),
    ("twitter2017", "train"): (3373, 53007, {"PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701}),
    ("twitter2017", "dev"): (723, 11309, {"PER": 626, "LOC": 173, "ORG": 375, "MISC": 150}),
    ("twitter2017", "test"): (723, 11330, {"PER": 621, "LOC": 178, "ORG": 395, "MISC": 157}),
}


@pytest.mark.data
@pytest.mark.parametrize(("dataset", "split"), sorted(README_COUNTS))
def test_real_files_reproduce_readme_counts(benchmark_dir: Path, dataset: str, split: str) -> None:
    sentences = read_split(benchmark_dir, dataset, split)  # type: ignore[arg-type]
    tweets, tokens, per_type = README_COUNTS[(dataset, split)]
    assert len(sentences) == tweets
    assert sum(len(s.tokens) for s in sentences) == tokens
    begins = Counter(label[2:] for s in sentences for label in s.labels if label.startswith("B-"))
    assert dict(begins) == per_type
    assert all(s.image_id for s in sentences)
    assert len({s.image_id for s in sentences}) == tweets


@pytest.mark.data
def test_real_wnut16_counts(benchmark_dir: Path) -> None:
    # README: entities per split 1,496 / 661 / 3,473 and tweets 2,394 / 1,000 / 3,850.
    for split, tweets, entities in (("train", 2394, 1496), ("dev", 1000, 661), ("test", 3850, 3473)):
        sentences = read_split(benchmark_dir, "wnut16", split)  # type: ignore[arg-type]
        assert len(sentences) == tweets
        assert sum(label.startswith("B-") for s in sentences for label in s.labels) == entities
