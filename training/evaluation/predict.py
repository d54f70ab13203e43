"""Run a model over sentences and return one BIO tag per gold token, ready for `score_tags`.

Windows are decoded separately and each word takes the tag of the window that owns it; words the
tokenizer turns into zero subwords (U+FE0F and friends) get no prediction and score as "O",
exactly as the worker would emit nothing for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.data.conll import Sentence
from training.data.dataset import Collator, EncodedExample, bucket_batches, iterate_batches
from training.data.labels import LABELS
from training.model.bga_mner import BGAMNER


@torch.no_grad()
def predict_tags(
    model: BGAMNER,
    sentences: Sequence[Sentence],
    examples: Sequence[EncodedExample],
    collator: Collator,
    *,
    batch_size: int,
    device: torch.device,
    use_image: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> list[list[str]]:
    was_training = model.training
    model.eval()
    tags: list[list[str]] = [["O"] * len(sentence.tokens) for sentence in sentences]
    batches = bucket_batches([example.length for example in examples], batch_size, shuffle=False)
    try:
        for indices, batch in iterate_batches(examples, batches, collator):
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                decoded = model.decode(batch.to(device), use_image=use_image)
            for index, label_ids in zip(indices, decoded, strict=True):
                example = examples[index]
                sentence_tags = tags[example.sentence_index]
                for position, label_id in zip(example.word_positions, label_ids, strict=True):
                    sentence_tags[position] = LABELS[label_id]
    finally:
        model.train(was_training)
    return tags
