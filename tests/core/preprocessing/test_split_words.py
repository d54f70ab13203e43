from __future__ import annotations

import itertools
import random

import pytest

from bga_mner.preprocessing import Word, split_words


def texts(post: str) -> list[str]:
    return [w.text for w in split_words(post)]


def assert_offsets(post: str) -> list[Word]:
    words = split_words(post)
    for word in words:
        assert post[word.start : word.end] == word.text
        assert word.text and not word.text.isspace()
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    return words


@pytest.mark.parametrize("post", ["", " ", "\t\n  ", "\u200b", "\u200b \ufeff\u2060\u200e\u200f\u00a0\u3000"])
def test_empty_or_invisible_text_has_no_words(post: str) -> None:
    assert split_words(post) == []


@pytest.mark.parametrize(
    ("post", "expected"),
    [
        (
            "RT @JayKenMinaj_: Me outside!! http://t.co/Z3neVBQ7vF",
            ["RT", "@JayKenMinaj", "_", ":", "Me", "outside", "!", "!", "http://t.co/Z3neVBQ7vF"],
        ),
        ("I've paid $2.99 at 6:30pm", ["I", "'", "ve", "paid", "$", "2", ".", "99", "at", "6", ":", "30pm"]),
        ("Tom &amp; Jerry &gt; you", ["Tom", "&amp", ";", "Jerry", "&gt", ";", "you"]),
        (
            "#Blackhawks win 3-1, high-level stuff w/ 9/11",
            ["#Blackhawks", "win", "3-1", ",", "high-level", "stuff", "w/", "9/11"],
        ),
        ("*wink* ... -- :) :-( lol:D", ["*", "wink", "*", "...", "--", ":)", ":-(", "lol", ":", "D"]),
        ("$AAPL is up", ["$AAPL", "is", "up"]),
        ("(see https://example.com/a?b=1).", ["(", "see", "https://example.com/a?b=1", ")", "."]),
        ("read more http://t.co/4bYcV… and http…", ["read", "more", "http://t.co/4bYcV…", "and", "http…"]),
        ("Beyoncé in Zürich", ["Beyoncé", "in", "Zürich"]),
        ("see http://t.co/abc😀! www.x.org/a.", ["see", "http://t.co/abc", "😀", "!", "www.x.org/a", "."]),
    ],
)
def test_benchmark_like_words(post: str, expected: list[str]) -> None:
    assert_offsets(post)
    assert texts(post) == expected


def test_emoji_sequences_stay_whole_with_zwj_and_vs16() -> None:
    family = "👨\u200d👩\u200d👧"
    heart = "❤\ufe0f"
    thumbs = "👍🏽"
    flag = "🇺🇸"
    scotland = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    keycap = "1\ufe0f\u20e3"
    post = f"{family} love {heart} {thumbs}{flag} {scotland} {keycap} done"
    words = assert_offsets(post)
    assert [w.text for w in words] == [family, "love", heart, thumbs + flag, scotland, keycap, "done"]


def test_zero_width_characters_separate_words_and_are_dropped() -> None:
    post = "New\u200bYork \u2060Knicks\ufeff! soft\u00adhyphen"
    words = assert_offsets(post)
    assert [w.text for w in words] == ["New", "York", "Knicks", "!", "soft", "hyphen"]
    for word in words:
        assert not any(ch in word.text for ch in "\u200b\u2060\ufeff\u00ad")


def test_stray_variation_selector_is_not_part_of_a_word() -> None:
    post = "Paris\ufe0f rocks"
    assert texts(post) == ["Paris", "rocks"]


def test_rtl_text_and_bidi_marks_keep_offsets() -> None:
    post = "\u200fمرحبا بالعالم\u200e @user في دبي!"
    words = assert_offsets(post)
    assert [w.text for w in words] == ["مرحبا", "بالعالم", "@user", "في", "دبي", "!"]
    assert words[0].start == 1


def test_combining_marks_stay_inside_their_word() -> None:
    post = "cafe\u0301 नमस्ते"
    assert texts(post) == ["cafe\u0301", "नमस्ते"]


def test_offsets_hold_on_random_unicode_soup() -> None:
    alphabet = [
        *"abcXYZ019 .,!?@#_-/:;'\"()&$…\n\t",
        *["\u200b", "\u200d", "\ufe0f", "\u200f", "\u0301", "😀", "👍", "🏽", "🇺", "🇸", "مر", "東京"],
        *["http://t.co/x", "&amp;"],
    ]
    rng = random.Random(7)
    for _ in range(2000):
        post = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        words = assert_offsets(post)
        covered = {i for w in words for i in range(w.start, w.end)}
        for i, ch in enumerate(post):
            if i not in covered:
                # only separators may be left out
                assert ch.isspace() or ch in "\u200b\u200d\ufe0f\u200f", (post, i, ch)
