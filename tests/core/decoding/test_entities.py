from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bga_mner.decoding import CRFParams, decode_words, gather_word_emissions, marginals
from bga_mner.preprocessing import EncodedWindow, SubwordEncoder, Word, split_words

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
NEUTRAL = CRFParams(np.zeros(5), np.zeros(5), np.zeros((5, 5)))


def emissions_for(tags: list[str], strength: float = 8.0) -> npt.NDArray[np.float64]:
    rows = np.zeros((len(tags), len(LABELS)))
    for i, tag in enumerate(tags):
        rows[i, LABELS.index(tag)] = strength
    return rows


@pytest.mark.parametrize(
    ("post", "tagged", "expected"),
    [
        (
            "RT @user: 😀 Barack\u200bObama in 🇺🇸 New York http://t.co/x",
            {"Barack": "B-PER", "Obama": "I-PER", "New": "B-LOC", "York": "I-LOC"},
            [("Barack\u200bObama", "PER"), ("New York", "LOC")],
        ),
        (
            "👨\u200d👩\u200d👧 visit مدينة دبي today",
            {"مدينة": "B-LOC", "دبي": "I-LOC"},
            [("مدينة دبي", "LOC")],
        ),
        ("\u200fشكرا\u200f Ahmed!", {"Ahmed": "B-PER"}, [("Ahmed", "PER")]),
        ("I-only Paris", {"Paris": "I-LOC"}, [("Paris", "LOC")]),  # orphan I- counts (lenient)
        ("", {}, []),
    ],
)
def test_entities_are_exact_slices_of_the_post(
    post: str, tagged: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    words = split_words(post)
    tags = [tagged.get(w.text, "O") for w in words]
    entities = decode_words(post, words, emissions_for(tags), LABELS, NEUTRAL)
    assert [(e.text, e.type) for e in entities] == expected
    for entity in entities:
        assert post[entity.start : entity.end] == entity.text
        assert 0.99 < entity.score <= 1.0 + 1e-9


def test_score_is_mean_marginal_along_the_path() -> None:
    post = "Tom Hanks"
    words = split_words(post)
    emissions = np.array([[0.0, 1.5, 0.0, 0.2, 0.0], [0.5, 0.0, 1.0, 0.0, 0.3]])
    [entity] = decode_words(post, words, emissions, LABELS, NEUTRAL)
    posterior = marginals(emissions, NEUTRAL)
    assert entity.text == "Tom Hanks"
    assert entity.score == pytest.approx((posterior[0, 1] + posterior[1, 2]) / 2)


def test_words_without_emissions_are_skipped_not_entity_breakers() -> None:
    post = "New \ufe0f York"  # pretend the middle word had no subwords
    words = [Word("New", 0, 3), Word("\ufe0f", 4, 5), Word("York", 6, 10)]
    emissions = emissions_for(["B-LOC", "O", "I-LOC"])
    emissions[1] = np.nan
    [entity] = decode_words(post, words, emissions, LABELS, NEUTRAL)
    assert (entity.text, entity.start, entity.end, entity.type) == ("New \ufe0f York", 0, 10, "LOC")


def test_shape_errors_name_the_problem() -> None:
    words = split_words("a b")
    with pytest.raises(ValueError, match="one emission row per word: 2 words"):
        decode_words("a b", words, np.zeros((3, 5)), LABELS, NEUTRAL)
    with pytest.raises(ValueError, match="disagree"):
        decode_words("a b", words, np.zeros((2, 4)), LABELS[:4], NEUTRAL)


def test_gather_takes_each_word_from_its_owning_window() -> None:
    windows = [
        EncodedWindow([101, 1, 2, 3, 102], [0, 1, 1, 1, 0], [1, 2, 3, -1], range(0, 2)),
        EncodedWindow([101, 2, 3, 4, 102], [0, 1, 1, 1, 0], [-1, 1, 2, 3], range(2, 4)),
    ]
    emissions = np.zeros((2, 6, 2), dtype=np.float32)  # padded to 6
    emissions[0, :, 0] = np.arange(6)
    emissions[1, :, 0] = 10 + np.arange(6)
    gathered = gather_word_emissions(windows, emissions)
    np.testing.assert_array_equal(gathered[:, 0], [1, 2, 12, 13])
    assert gathered.dtype == np.float32
    # a list of unpadded per-window arrays works too
    np.testing.assert_array_equal(gather_word_emissions(windows, [e[:5] for e in emissions]), gathered)
    with pytest.raises(ValueError, match="2 windows but emissions for 1"):
        gather_word_emissions(windows, emissions[:1])
    with pytest.raises(ValueError, match=r"needs emissions \[>= 5, 2\]"):
        gather_word_emissions(windows, emissions[:, :4])


def test_end_to_end_with_real_tokenizer_and_many_windows(tokenizer_json: Path) -> None:
    encoder = SubwordEncoder.from_file(tokenizer_json, max_length=12, stride=3)
    post = (
        "RT @cnn: 😀 Barack Obama visited New York\u200b today ❤\ufe0f #news " * 3 + "http://t.co/Z3neVBQ7vF"
    )
    words = split_words(post)
    windows = encoder.encode_words([w.text for w in words])
    assert len(windows) > 3
    gold = {"Barack": "B-PER", "Obama": "I-PER", "New": "B-LOC", "York": "I-LOC"}
    # a fake model: the emission of each subword position says the gold tag of its word
    batch = np.zeros((len(windows), 12, len(LABELS)), dtype=np.float32)
    for k, window in enumerate(windows):
        for i, position in enumerate(window.word_index):
            if position >= 0:
                batch[k, position, LABELS.index(gold.get(words[i].text, "O"))] = 8.0
    entities = decode_words(post, words, gather_word_emissions(windows, batch), LABELS, NEUTRAL)
    assert [(e.text, e.type) for e in entities] == [("Barack Obama", "PER"), ("New York", "LOC")] * 3
    assert all(post[e.start : e.end] == e.text for e in entities)
