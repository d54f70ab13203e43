"""Casing and shape class of a word: a separate model input because the backbone is uncased.

all-MiniLM-L6-v2 lowercases its input, so "Apple" and "apple" reach it as the same subwords;
casing is one of the strongest cues for names in tweets, so it is fed back as a small embedding
vocabulary. Class 0 is reserved for padding and the special tokens ([CLS], [SEP]).
"""

from __future__ import annotations

from enum import IntEnum

import regex  # no types-regex in the dev extras yet

__all__ = ["NUM_CASING_CLASSES", "Casing", "casing_class"]


class Casing(IntEnum):
    """The casing/shape vocabulary; values are embedding indices and must never be renumbered."""

    PADDING = 0
    LOWER = 1  # apple
    UPPER = 2  # NASA (two or more cased letters, all upper)
    TITLE = 3  # Apple, I
    MIXED = 4  # iPhone, McDonald
    NUMERIC = 5  # 2015, 3-1, 9/11 (digits and joiners only)
    HAS_DIGIT = 6  # 30pm, F-16s
    MENTION = 7  # @user
    HASHTAG = 8  # #tag
    URL = 9  # http://t.co/...
    PUNCTUATION = 10  # . , ! ... &amp
    UNCASED_LETTERS = 11  # scripts without case: مرحبا, 東京
    OTHER = 12  # emoji, symbols, anything else


NUM_CASING_CLASSES = len(Casing)

_URL = regex.compile(r"(?i)(?:https?:|www\.|h(?:t(?:t(?:ps?)?)?)?:?/{0,2}…$)")
_NUMERIC = regex.compile(r"[\p{N}]+(?:[-/.,:][\p{N}]+)*")
_PUNCTUATION = regex.compile(r"(?:[\p{P}\p{Sk}\p{Sm}\p{Sc}]+|-*&(?:amp|lt|gt|quot|apos|nbsp))")


def casing_class(word: str) -> int:
    """Return the :class:`Casing` value of one word as a plain int (0 only for the empty string)."""
    return int(_casing(word))


def _casing(word: str) -> Casing:
    if not word:
        return Casing.PADDING
    first = word[0]
    if first in "@＠" and len(word) > 1:
        return Casing.MENTION
    if first in "#＃" and len(word) > 1:
        return Casing.HASHTAG
    if _URL.match(word):
        return Casing.URL
    if _NUMERIC.fullmatch(word):
        return Casing.NUMERIC
    if _PUNCTUATION.fullmatch(word):
        return Casing.PUNCTUATION
    cased = [c for c in word if c.islower() or c.isupper()]
    has_digit = any(c.isdigit() for c in word)
    if has_digit and (cased or any(c.isalpha() for c in word)):
        return Casing.HAS_DIGIT
    if not cased:
        return Casing.UNCASED_LETTERS if any(c.isalpha() for c in word) else Casing.OTHER
    uppers = sum(c.isupper() for c in cased)
    if uppers == 0:
        return Casing.LOWER
    if uppers == len(cased):
        return Casing.UPPER if len(cased) > 1 else Casing.TITLE
    if cased[0].isupper() and uppers == 1:
        return Casing.TITLE
    return Casing.MIXED
