"""The fixed label vocabulary shared by training, export and serving.

The order is part of the exported model's contract (the emissions' last axis), so it is a
constant here rather than something derived from whichever data set happens to be loaded.
"""

from __future__ import annotations

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
LABELS: list[str] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
LABEL_TO_ID: dict[str, int] = {label: index for index, label in enumerate(LABELS)}
IGNORE_INDEX = -100


def label_ids(labels: list[str] | tuple[str, ...]) -> list[int]:
    """Map tag strings to ids; an unknown tag is a data error, never silently "O"."""
    try:
        return [LABEL_TO_ID[label] for label in labels]
    except KeyError as error:
        raise ValueError(f"unknown label {error.args[0]!r}; expected one of {LABELS}") from None
