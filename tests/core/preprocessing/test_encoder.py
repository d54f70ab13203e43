from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from bga_mner.preprocessing import EncodedWindow, SubwordEncoder, casing_class, split_words

POST = (
    "RT @JayKenMinaj_: Me outside of where George Zimmerman got shot at. You know God is so good. "
    "\ufe0f #Blessed 😀 http://t.co/Z3neVBQ7vF"
)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_json: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_json))


def first_subwords(tokenizer: Tokenizer, words: list[str]) -> tuple[list[int], dict[int, int]]:
    """Reference: the plain tokenizer's ids (no specials) and each word's first subword id."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    encoding = tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
    first: dict[int, int] = {}
    for token_id, word_id in zip(encoding.ids, encoding.word_ids, strict=True):
        if word_id is not None:
            first.setdefault(word_id, token_id)
    return encoding.ids, first


def check_windows(encoder: SubwordEncoder, tokenizer: Tokenizer, words: list[str]) -> list[EncodedWindow]:
    windows = encoder.encode_words(words)
    _, first = first_subwords(tokenizer, words)
    assert windows
    owned = [i for w in windows for i in w.owned_words]
    assert owned == list(range(len(words)))  # every word owned exactly once, in order
    for window in windows:
        assert len(window.input_ids) <= encoder.max_length
        assert len(window.casing_ids) == len(window.input_ids)
        assert len(window.word_index) == len(words)
        assert window.input_ids[: len(encoder.prefix_ids)] == encoder.prefix_ids
        assert window.input_ids[-len(encoder.suffix_ids) :] == encoder.suffix_ids
        for i, position in enumerate(window.word_index):
            if position >= 0:
                assert window.input_ids[position] == first[i]
                assert window.casing_ids[position] == casing_class(words[i])
    for i in range(len(words)):
        owner = next(w for w in windows if i in w.owned_words)
        if i in first:
            assert owner.word_index[i] >= 0, f"word {i} is not in the window that owns it"
        else:
            assert all(w.word_index[i] == -1 for w in windows)
    return windows


def test_special_tokens_come_from_the_tokenizer(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=64)
    reference = tokenizer.encode(["hello"], is_pretokenized=True)
    assert encoder.prefix_ids == [reference.ids[0]] == [tokenizer.token_to_id("[CLS]")]
    assert encoder.suffix_ids == [tokenizer.token_to_id("[SEP]")]
    assert encoder.pad_id == tokenizer.token_to_id("[PAD]")


def test_short_post_is_one_window_equal_to_the_plain_tokenizer(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=128)
    words = [w.text for w in split_words(POST)]
    [window] = check_windows(encoder, tokenizer, words)
    ids, _ = first_subwords(tokenizer, words)
    assert window.input_ids == encoder.prefix_ids + ids + encoder.suffix_ids
    assert window.owned_words == range(len(words))
    assert window.casing_ids[0] == 0 and window.casing_ids[-1] == 0


def test_words_without_subwords_get_minus_one(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=32, stride=4)
    words = ["New", "\ufe0f", "\u200b", "York", "\u0301"]
    [window] = check_windows(encoder, tokenizer, words)
    assert window.word_index[1] == window.word_index[2] == window.word_index[4] == -1
    assert window.word_index[0] == 1 and window.word_index[3] == 2


def test_empty_post_is_one_window_of_specials(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=16, stride=4)
    [window] = encoder.encode_words([])
    assert window.input_ids == encoder.prefix_ids + encoder.suffix_ids
    assert window.word_index == [] and window.owned_words == range(0)


def test_long_post_is_split_into_overlapping_windows_without_truncation(tokenizer: Tokenizer) -> None:
    # overlap is at most `stride` subwords of whole words, so no word here is longer than that
    encoder = SubwordEncoder(tokenizer, max_length=16, stride=4)
    words = [
        w.text for w in split_words("Me outside of where George Zimmerman got shot at. God is so good! " * 4)
    ]
    windows = check_windows(encoder, tokenizer, words)
    assert len(windows) > 3
    for before, after in itertools.pairwise(windows):
        shared = [i for i in range(len(words)) if before.word_index[i] >= 0 and after.word_index[i] >= 0]
        assert shared, "consecutive windows must share context"
        # the owner of each shared word is the window where it is further from the cut
        for i in shared:
            distance_before = len(before.input_ids) - 1 - before.word_index[i]
            distance_after = after.word_index[i]
            if i in before.owned_words:
                assert distance_before >= distance_after - 1
            else:
                assert distance_after >= distance_before - 1


def test_no_word_is_lost_on_random_long_posts(tokenizer: Tokenizer) -> None:
    rng = random.Random(3)
    vocabulary = [
        "the",
        "Zimmerman",
        "!",
        "http://t.co/Z3neVBQ7vF",
        "\ufe0f",
        "#Blessed",
        "😀",
        "antidisestablishment",
    ]
    for max_length, stride in [(8, 0), (8, 3), (12, 5), (20, 9), (64, 31), (12, 9)]:
        encoder = SubwordEncoder(tokenizer, max_length=max_length, stride=stride)
        for _ in range(30):
            words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 60))]
            check_windows(encoder, tokenizer, words)


def test_a_huge_word_is_capped_not_dropped(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=10, stride=2)
    words = ["before", "x" * 300 + "." * 50, "after"]
    windows = check_windows(encoder, tokenizer, words)
    assert all(len(w.input_ids) <= 10 for w in windows)


def test_encode_many_equals_encode_words(tokenizer: Tokenizer) -> None:
    encoder = SubwordEncoder(tokenizer, max_length=16, stride=4)
    posts = [[w.text for w in split_words(p)] for p in [POST, "", "hi there", POST * 2]]
    assert encoder.encode_many(posts) == [encoder.encode_words(p) for p in posts]
    assert encoder.encode_many([]) == []


def test_callers_tokenizer_is_not_modified(tokenizer: Tokenizer) -> None:
    before = tokenizer.to_str()
    SubwordEncoder(tokenizer, max_length=16, stride=4)
    assert tokenizer.to_str() == before


def test_from_file_and_bad_arguments(tokenizer_json: Path, tmp_path: Path) -> None:
    assert SubwordEncoder.from_file(tokenizer_json, 32, 8).max_length == 32
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        SubwordEncoder.from_file(tmp_path / "nope.json", 32)
    with pytest.raises(ValueError, match="stride=30 must be between 0 and 29"):
        SubwordEncoder.from_file(tokenizer_json, 32, 30)
    with pytest.raises(ValueError, match="need at least 2"):
        SubwordEncoder.from_file(tokenizer_json, 3, 0)
