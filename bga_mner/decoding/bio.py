"""BIO tag sequences -> entity spans, counted the way the field's scorer (seqeval, default mode) does.

Twitter-2015 has hundreds of "orphan" ``I-X`` tags (after ``O`` or another type). Lenient seqeval
counts each as the start of an entity, and the published F1 scores are computed that way, so
decoding must produce the same spans or serving would disagree with the reported numbers.
"""

from __future__ import annotations

__all__ = ["bio_spans", "repair_bio", "split_tag"]


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` (or anything without a B-/I- prefix) -> ``("O", "")``."""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
        return tag[0], tag[2:]
    return "O", ""


def repair_bio(tags: list[str]) -> list[str]:
    """Turn every orphan ``I-X`` (after ``O``, a different type, or at the start) into ``B-X``."""
    repaired: list[str] = []
    previous_type = ""
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and entity_type != previous_type:
            tag = f"B-{entity_type}"
        repaired.append(tag if prefix != "O" else "O")
        previous_type = entity_type
    return repaired


def bio_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Entity spans ``(first word, last word + 1, type)`` with lenient seqeval semantics."""
    spans: list[tuple[int, int, str]] = []
    start, current = -1, ""
    for position, tag in enumerate([*repair_bio(tags), "O"]):
        prefix, entity_type = split_tag(tag)
        if current and (prefix != "I" or entity_type != current):
            spans.append((start, position, current))
            current = ""
        if prefix == "B":
            start, current = position, entity_type
    return spans
