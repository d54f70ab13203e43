"""Case-transformed copies of sentences: for robustness scores and for training-time augmentation.

People type posts all in lower case, in capitals or Title Case; the benchmarks are mostly edited
text. The same transforms serve two jobs: scoring a model on lowercased / uppercased / title-cased
copies of dev and test (how much F1 is lost when capitals carry no signal), and showing training
sentences in those forms at random (`data.case_augment`). Labels never change: an entity is the
same entity whatever its case.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from training.data.conll import Sentence

CaseName = Literal["lower", "upper", "title"]
CASES: tuple[CaseName, ...] = ("lower", "upper", "title")


def title_word(word: str) -> str:
    """First character upper, the rest lower ("don't" -> "Don't"; `str.title` gives "Don'T")."""
    return word[:1].upper() + word[1:].lower()


TRANSFORMS: dict[CaseName, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "title": title_word,
}


def recase(sentence: Sentence, case: CaseName) -> Sentence:
    """The sentence with every token recased; labels and image id unchanged."""
    transform = TRANSFORMS[case]
    return replace(sentence, tokens=tuple(transform(token) for token in sentence.tokens))


def recase_all(sentences: Sequence[Sentence], case: CaseName) -> list[Sentence]:
    return [recase(sentence, case) for sentence in sentences]


def draw_cases(count: int, probabilities: dict[CaseName, float], rng: random.Random) -> list[CaseName | None]:
    """One draw per sentence: a case with its probability, or None (as written) with the rest."""
    cases: list[CaseName | None] = []
    for _ in range(count):
        draw = rng.random()
        chosen: CaseName | None = None
        for case, probability in probabilities.items():
            if draw < probability:
                chosen = case
                break
            draw -= probability
        cases.append(chosen)
    return cases
