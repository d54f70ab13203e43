from __future__ import annotations

import random

import pytest

from bga_mner.decoding import bio_spans, repair_bio


@pytest.mark.parametrize(
    ("tags", "repaired"),
    [
        ([], []),
        (["O", "O"], ["O", "O"]),
        (["I-PER", "I-PER"], ["B-PER", "I-PER"]),
        (["O", "I-LOC", "O"], ["O", "B-LOC", "O"]),
        (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),
        (["B-PER", "I-PER", "B-PER"], ["B-PER", "I-PER", "B-PER"]),
        (["B-OTHER", "junk", "I-OTHER"], ["B-OTHER", "O", "B-OTHER"]),
    ],
)
def test_repair_bio(tags: list[str], repaired: list[str]) -> None:
    assert repair_bio(tags) == repaired


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        ([], []),
        (["O"], []),
        (["B-PER"], [(0, 1, "PER")]),
        (["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
        (["I-PER", "I-PER", "O"], [(0, 2, "PER")]),  # orphan I- at the start
        (["O", "I-ORG", "I-ORG", "B-ORG"], [(1, 3, "ORG"), (3, 4, "ORG")]),
        (["B-PER", "I-LOC"], [(0, 1, "PER"), (1, 2, "LOC")]),  # type change starts a new entity
        (["B-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),
        (["B-MISC", "I-MISC", "I-MISC"], [(0, 3, "MISC")]),
    ],
)
def test_bio_spans_are_lenient_like_seqeval(tags: list[str], spans: list[tuple[int, int, str]]) -> None:
    assert bio_spans(tags) == spans


def test_bio_spans_agree_with_seqeval_on_random_sequences() -> None:
    seqeval = pytest.importorskip("seqeval.metrics.sequence_labeling")
    rng = random.Random(5)
    alphabet = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for _ in range(500):
        tags = [rng.choice(alphabet) for _ in range(rng.randint(0, 12))]
        expected = {(t, s, e + 1) for t, s, e in seqeval.get_entities(tags)}
        assert {(t, s, e) for s, e, t in bio_spans(tags)} == expected, tags
