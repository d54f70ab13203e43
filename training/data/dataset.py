"""Sentences -> encoded windows -> padded `Batch`es, with length-sorted bucketing.

Encoding goes through `bga_mner.preprocessing.SubwordEncoder`, the exact code the worker runs at
serving time, with the gold CoNLL tokens as words. Each window becomes one example. Its CRF
positions are the words the window *owns* that have at least one subword, packed to the left
(`word_mask` is a prefix), so the CRF never sees holes; `word_positions` maps them back to the
sentence for scoring, where any word without a prediction (zero subwords) counts as "O".
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from bga_mner.preprocessing import SubwordEncoder, pad_batch
from bga_mner.preprocessing.encoder import EncodedWindow
from training.data.conll import Sentence
from training.data.images import ImageLoader
from training.data.labels import IGNORE_INDEX, LABEL_TO_ID
from training.model.batch import Batch
from training.model.offline_encoders import resolve_encoder


@dataclass(frozen=True)
class EncodedExample:
    """One window of one sentence, ready to collate."""

    sentence_index: int
    window: EncodedWindow
    word_index: list[int]  # subword position of each CRF word (packed)
    word_positions: list[int]  # index in the sentence of each CRF word
    label_ids: list[int]  # gold label of each CRF word
    image_id: str | None

    @property
    def length(self) -> int:
        return len(self.window.input_ids)


def load_tokenizer(text_encoder: str) -> Tokenizer:
    """The fast tokenizer of a Hugging Face model folder or name, as a `tokenizers.Tokenizer`.

    A folder's `tokenizer.json` is used as is; otherwise transformers builds the fast tokenizer
    (e.g. from a vocab.txt), which is then saved with the checkpoint for export and serving. A hub name
    of an encoder that installs offline (`training.model.offline_encoders`) reads its local folder.
    """
    text_encoder = resolve_encoder(text_encoder)
    path = Path(text_encoder)
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(text_encoder, use_fast=True)
    backend: Tokenizer = fast.backend_tokenizer
    return backend


def encode_sentences(sentences: Sequence[Sentence], encoder: SubwordEncoder) -> list[EncodedExample]:
    examples: list[EncodedExample] = []
    encoded = encoder.encode_many([sentence.tokens for sentence in sentences])
    for sentence_index, (sentence, windows) in enumerate(zip(sentences, encoded, strict=True)):
        for window in windows:
            positions = [w for w in window.owned_words if window.word_index[w] >= 0]
            examples.append(
                EncodedExample(
                    sentence_index=sentence_index,
                    window=window,
                    word_index=[window.word_index[w] for w in positions],
                    word_positions=positions,
                    label_ids=[LABEL_TO_ID[sentence.labels[w]] for w in positions],
                    image_id=sentence.image_id,
                )
            )
    return examples


@dataclass
class Collator:
    """Pads a list of examples into a `Batch` (CPU tensors); images only when a loader is given."""

    pad_id: int
    images: ImageLoader | None = None

    def __call__(self, examples: Sequence[EncodedExample]) -> Batch:
        padded = pad_batch([example.window for example in examples], self.pad_id)
        width = max(1, max(len(example.word_index) for example in examples))
        word_index = np.full((len(examples), width), -1, dtype=np.int64)
        labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
        for row, example in enumerate(examples):
            word_index[row, : len(example.word_index)] = example.word_index
            labels[row, : len(example.label_ids)] = example.label_ids
        pixel_values: torch.Tensor | None = None
        image_mask: torch.Tensor | None = None
        if self.images is not None:
            loaded = [self.images.load(example.image_id) for example in examples]
            pixel_values = torch.from_numpy(np.stack([pixels for pixels, _ in loaded]))
            image_mask = torch.tensor([present for _, present in loaded], dtype=torch.bool)
        word_index_tensor = torch.from_numpy(word_index)
        return Batch(
            input_ids=torch.from_numpy(padded["input_ids"]),
            attention_mask=torch.from_numpy(padded["attention_mask"]),
            casing_ids=torch.from_numpy(padded["casing_ids"]),
            word_index=word_index_tensor,
            word_mask=word_index_tensor >= 0,
            labels=torch.from_numpy(labels),
            pixel_values=pixel_values,
            image_mask=image_mask,
        )


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    rng: random.Random | None = None,
    pool: int = 50,
) -> list[list[int]]:
    """Index batches of similar length, so that padding to the longest in a batch stays cheap.

    Training shuffles, then sorts within pools of `pool` batches, then shuffles the batches: every
    epoch sees different neighbours while each batch stays nearly uniform in length. Evaluation
    sorts everything (order is restored by the caller through the example indices).
    """
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda index: lengths[index])
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    generator = rng or random.Random()
    generator.shuffle(order)
    batches: list[list[int]] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda index: lengths[index])
        batches.extend(chunk[offset : offset + batch_size] for offset in range(0, len(chunk), batch_size))
    generator.shuffle(batches)
    return batches


def iterate_batches(
    examples: Sequence[EncodedExample], batches: Sequence[Sequence[int]], collator: Collator
) -> Iterator[tuple[list[int], Batch]]:
    for indices in batches:
        yield list(indices), collator([examples[index] for index in indices])
