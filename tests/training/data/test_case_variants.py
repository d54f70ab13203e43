"""Case-transformed copies keep labels and image ids and change only the tokens' case."""

from __future__ import annotations

import random

import pytest

from training.data.case_variants import draw_cases, recase, recase_all, title_word
from training.data.conll import Sentence

SENTENCE = Sentence(
    ("RT", "@NBA", ":", "LeBron", "don't", "NYC"), ("O", "O", "O", "B-PER", "O", "B-LOC"), "7"
)


def test_recase_changes_tokens_only() -> None:
    lower = recase(SENTENCE, "lower")
    assert lower.tokens == ("rt", "@nba", ":", "lebron", "don't", "nyc")
    assert (lower.labels, lower.image_id) == (SENTENCE.labels, SENTENCE.image_id)
    assert recase(SENTENCE, "upper").tokens == ("RT", "@NBA", ":", "LEBRON", "DON'T", "NYC")
    assert recase(SENTENCE, "title").tokens == ("Rt", "@nba", ":", "Lebron", "Don't", "Nyc")
    assert recase_all([SENTENCE, SENTENCE], "lower") == [lower, lower]


def test_title_word_is_not_str_title() -> None:
    assert title_word("don't") == "Don't" and "don't".title() == "Don'T"
    assert title_word("") == ""


def test_draw_cases_follows_the_probabilities() -> None:
    cases = draw_cases(20_000, {"lower": 0.2, "upper": 0.1}, random.Random(0))
    assert cases.count("lower") / len(cases) == pytest.approx(0.2, abs=0.015)
    assert cases.count("upper") / len(cases) == pytest.approx(0.1, abs=0.015)
    assert cases.count(None) / len(cases) == pytest.approx(0.7, abs=0.015)
    assert draw_cases(5, {}, random.Random(0)) == [None] * 5
