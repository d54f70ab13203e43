"""Readers for the Twitter MNER benchmarks, WNUT-16 and WNUT-17, normalised to PER/LOC/ORG/MISC BIO tags.

All formats are `token<TAB>label` lines with blank lines between tweets; the MNER files add an
`IMGID:<id>` line before each tweet naming its image, and WNUT-17's train file separates some
documents with a line holding a lone TAB. Labels are normalised here, once, so that everything
downstream sees the single vocabulary of `training.data.labels`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.data.labels import LABEL_TO_ID

DatasetName = Literal["twitter2015", "twitter2017", "wnut16", "wnut17"]
SplitName = Literal["train", "dev", "test"]

# Twitter-2015 calls its fourth type OTHER; UMT (and every paper after it) reads it as MISC.
TWITTER_TYPE_MAP: dict[str, str] = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "OTHER": "MISC", "MISC": "MISC"}

# WNUT-16's ten types onto the MNER four. The MNER annotation (Zhang et al. 2018, following the
# CoNLL-2003 guidelines) tags places, including named buildings and venues, as LOC, companies and
# teams as ORG, and everything else with a name (products, titles, events) as OTHER/MISC.
# musicartist is mostly solo artists in WNUT-16 (bands are a minority), so it goes to PER; that is
# the one lossy choice and it is why WNUT-16 is extra data here, never an evaluation set.
WNUT16_TYPE_MAP: dict[str, str] = {
    "person": "PER",
    "musicartist": "PER",
    "geo-loc": "LOC",
    "facility": "LOC",
    "company": "ORG",
    "sportsteam": "ORG",
    "product": "MISC",
    "movie": "MISC",
    "tvshow": "MISC",
    "other": "MISC",
}

# WNUT-17's six types onto the MNER four, by the same guidelines: groups (bands, teams) and
# corporations are organisations; products and creative works (titles) are MISC. Like WNUT-16 it is
# extra (pre-)training data only, never an evaluation set.
WNUT17_TYPE_MAP: dict[str, str] = {
    "person": "PER",
    "location": "LOC",
    "group": "ORG",
    "corporation": "ORG",
    "product": "MISC",
    "creative-work": "MISC",
}

# File names of each split inside <data_dir>/<dataset>/.
SPLIT_FILES: dict[DatasetName, dict[SplitName, str]] = {
    "twitter2015": {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"},
    "twitter2017": {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"},
    "wnut16": {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"},
    "wnut17": {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"},
}

# Benchmarks whose test split is reported; the others are training data only.
BENCHMARKS: tuple[DatasetName, ...] = ("twitter2015", "twitter2017")


@dataclass(frozen=True)
class Sentence:
    """One tweet: gold tokens, normalised BIO labels and the id of its image (None for text-only data)."""

    tokens: tuple[str, ...]
    labels: tuple[str, ...]
    image_id: str | None = None


def _map_label(label: str, type_map: dict[str, str], path: Path, line_number: int) -> str:
    if label == "O":
        return label
    prefix, _, entity_type = label.partition("-")
    mapped = type_map.get(entity_type)
    if prefix not in ("B", "I") or mapped is None:
        raise ValueError(f"{path}:{line_number}: unknown label {label!r}")
    normalised = f"{prefix}-{mapped}"
    assert normalised in LABEL_TO_ID
    return normalised


def _read(path: Path, type_map: dict[str, str]) -> Iterator[Sentence]:
    tokens: list[str] = []
    labels: list[str] = []
    image_id: str | None = None

    def flush() -> Sentence | None:
        nonlocal tokens, labels, image_id
        sentence = Sentence(tuple(tokens), tuple(labels), image_id) if tokens else None
        tokens, labels, image_id = [], [], None
        return sentence

    with path.open(encoding="utf-8", newline="\n") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if line.startswith("IMGID:"):
                if (sentence := flush()) is not None:
                    yield sentence
                image_id = line[len("IMGID:") :].strip()
                continue
            if line.strip(" \t") == "":  # blank, or WNUT-17's lone-TAB separator
                if (sentence := flush()) is not None:
                    yield sentence
                continue
            # The token itself may be unusual whitespace (a lone U+00A0): split on the last TAB only.
            token, tab, label = line.rpartition("\t")
            if not tab:
                raise ValueError(f"{path}:{line_number}: expected token<TAB>label, got {line!r}")
            tokens.append(token)
            labels.append(_map_label(label.strip(), type_map, path, line_number))
    if (sentence := flush()) is not None:
        yield sentence


def read_twitter_mner(path: Path) -> list[Sentence]:
    """Twitter-2015/2017 as released by UMT (IMGID lines, OTHER -> MISC)."""
    return list(_read(path, TWITTER_TYPE_MAP))


def read_wnut16(path: Path) -> list[Sentence]:
    """WNUT-16 with its ten types mapped by `WNUT16_TYPE_MAP`; no images."""
    return list(_read(path, WNUT16_TYPE_MAP))


def read_wnut17(path: Path) -> list[Sentence]:
    """WNUT-17 with its six types mapped by `WNUT17_TYPE_MAP`; no images."""
    return list(_read(path, WNUT17_TYPE_MAP))


READERS: dict[DatasetName, Callable[[Path], list[Sentence]]] = {
    "twitter2015": read_twitter_mner,
    "twitter2017": read_twitter_mner,
    "wnut16": read_wnut16,
    "wnut17": read_wnut17,
}


def split_path(data_dir: Path, dataset: DatasetName, split: SplitName) -> Path:
    return data_dir / dataset / SPLIT_FILES[dataset][split]


def read_split(data_dir: Path, dataset: DatasetName, split: SplitName) -> list[Sentence]:
    path = split_path(data_dir, dataset, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{dataset} {split}: {path} does not exist (set BGA_DATA_DIR or data.data_dir)"
        )
    return READERS[dataset](path)
