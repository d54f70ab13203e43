from __future__ import annotations

import pytest

from bga_mner.preprocessing import NUM_CASING_CLASSES, Casing, casing_class


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("", Casing.PADDING),
        ("apple", Casing.LOWER),
        ("NASA", Casing.UPPER),
        ("U.S", Casing.UPPER),
        ("Apple", Casing.TITLE),
        ("I", Casing.TITLE),
        ("iPhone", Casing.MIXED),
        ("McDonald", Casing.MIXED),
        ("2015", Casing.NUMERIC),
        ("3-1", Casing.NUMERIC),
        ("9/11", Casing.NUMERIC),
        ("30pm", Casing.HAS_DIGIT),
        ("F-16s", Casing.HAS_DIGIT),
        ("@JayKenMinaj", Casing.MENTION),
        ("#Blackhawks", Casing.HASHTAG),
        ("http://t.co/Z3neVBQ7vF", Casing.URL),
        ("http…", Casing.URL),
        ("h…", Casing.URL),
        (".", Casing.PUNCTUATION),
        ("...", Casing.PUNCTUATION),
        ("&amp", Casing.PUNCTUATION),
        ("$", Casing.PUNCTUATION),
        ("@", Casing.PUNCTUATION),
        ("مرحبا", Casing.UNCASED_LETTERS),
        ("東京", Casing.UNCASED_LETTERS),
        ("😀", Casing.OTHER),
    ],
)
def test_casing_classes(word: str, expected: Casing) -> None:
    value = casing_class(word)
    assert type(value) is int
    assert value == expected


def test_every_class_is_in_range_and_padding_is_zero() -> None:
    assert int(Casing.PADDING) == 0
    assert max(Casing) + 1 == NUM_CASING_CLASSES
    for word in ["x", "X", "Xx", "xX", "1", "1a", "@a", "#a", "www.x.org", "!", "ب", "🙂", "\u0301"]:
        assert 1 <= casing_class(word) < NUM_CASING_CLASSES
