"""The reference a TensorRT plan is checked against where it is built (deploy/tensorrt/plan_parity.py).

A plan can only be built on the serving GPU, inside the TensorRT container, where neither this
project nor ONNX Runtime is installed. So export writes the check's data next to ``model.onnx``
(``plan_parity.npz``): the fixed parity posts (training/export/parity.py) as the requests a worker
sends a TensorRT model (windows length-sorted, batched, padded up to a sequence bucket), the fp32
ONNX Runtime emissions for each, and per post where its words' first subwords are, plus the tags the
reference decodes to. The container side runs the plan on the same requests and compares.

Only numbers and one JSON string are stored (``np.load(..., allow_pickle=False)`` reads it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.model_repository import LoadedRepository
from bga_mner.preprocessing import EncodedWindow, pad_batch, split_words
from training.export.parity import PARITY_POSTS
from training.export.served_f1 import decode_tags

PARITY_FILE = "plan_parity.npz"


def _bucket(length: int, buckets: Sequence[int]) -> int:
    return next((b for b in buckets if b >= length), max(buckets))


def write_plan_parity(
    repository: LoadedRepository,
    onnx_path: Path,
    out: Path,
    buckets: Sequence[int],
    batch_size: int,
    texts: Sequence[str] = PARITY_POSTS,
) -> Path:
    """Write ``out`` (``plan_parity.npz``); returns it."""
    encoder = repository.encoder
    words = [[w.text for w in split_words(text)] for text in texts]
    posts = [(i, encoder.encode_words(w)) for i, w in enumerate(words) if w]
    items: list[tuple[int, int, EncodedWindow]] = [
        (p, k, w) for p, windows in posts for k, w in enumerate(windows)
    ]
    items.sort(key=lambda item: len(item[2].input_ids))
    backend = OnnxBackend(onnx_path, threads=2)
    arrays: dict[str, npt.NDArray[Any]] = {}
    location: dict[tuple[int, int], tuple[int, int]] = {}
    emissions_of: dict[tuple[int, int], npt.NDArray[Any]] = {}
    for request, start in enumerate(range(0, len(items), batch_size)):
        chunk = items[start : start + batch_size]
        padded = pad_batch([w for _, _, w in chunk], encoder.pad_id)
        length = _bucket(padded["input_ids"].shape[1], buckets)
        extra = length - padded["input_ids"].shape[1]
        for name, array in padded.items():
            fill = encoder.pad_id if name == "input_ids" else 0
            padded[name] = np.pad(array, ((0, 0), (0, extra)), constant_values=fill)
            arrays[f"{name}_{request}"] = padded[name]
        emissions = backend.infer(padded)
        arrays[f"emissions_{request}"] = emissions
        for row, (post, window, encoded) in enumerate(chunk):
            location[(post, window)] = (request, row)
            emissions_of[(post, window)] = emissions[row, : len(encoded.input_ids)]
    labels, crf = list(repository.manifest.labels), repository.crf
    described = []
    for post, windows in posts:
        keys = [(post, k) for k in range(len(windows))]
        described.append(
            {
                "post": post,
                "words": len(words[post]),
                "windows": [
                    {
                        "request": location[key][0],
                        "row": location[key][1],
                        "length": len(w.input_ids),
                        "word_index": list(w.word_index),
                        "owned": [w.owned_words.start, w.owned_words.stop],
                    }
                    for key, w in zip(keys, windows, strict=True)
                ],
                "tags": decode_tags(windows, [emissions_of[key] for key in keys], labels, crf),
            }
        )
    meta = {"requests": len(range(0, len(items), batch_size)), "buckets": list(buckets), "posts": described}
    arrays["meta"] = np.array(json.dumps(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out
