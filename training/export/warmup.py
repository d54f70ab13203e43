"""Triton warm-up requests made of real text instead of all-zero tensors.

Triton's ``zero_data`` warm-up sends ``attention_mask`` = 0 everywhere: every attention row is fully
masked, a case real traffic never has, and the engine (TensorRT picks kernels and tactics on first use
of a shape) is warmed on the wrong data. Here each warm-up input is a file under the model directory's
``warmup/`` folder (Triton's ``input_data_file``) holding one real window: a fixed tweet-like text
through the model's own tokenizer and casing features, filling the warm-up length exactly. Triton uses
the sample for every row of the warm-up batch. For TensorRT there is one warm-up per sequence bucket
(``tensorrt_build.sequence_buckets``), the lengths the worker pads to so that the dynamic batcher can
merge requests; deploy/model/publish_model.sh publishes ``<model>/warmup/`` with each version. Only the
TensorRT target uses these files: on the CPU targets nothing picks kernels on first use, and they keep
Triton's zero-data warm-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from bga_mner.model_repository import ModelWarmup, TritonModelConfig, WarmupInput
from bga_mner.preprocessing import SubwordEncoder, split_words

WARMUP_DIR = "warmup"
# Real-looking text with entities, casing variety, a mention, a hashtag and a URL; long enough to fill
# the longest window a model takes.
WARMUP_TEXT = " ".join(
    [
        "RT @nytimes : Donald Trump visits Paris with Emmanuel Macron #G7 https://t.co/abc123",
        "Taylor Swift and the Kansas City Chiefs at Arrowhead tonight !",
        "NEW YORK ( Reuters ) - Goldman Sachs CEO David Solomon said on Tuesday the bank would hire .",
        "Barack Obama met Angela Merkel in Berlin before flying to New York with Microsoft and the UN .",
    ]
    * 8
)
_DTYPES = {"TYPE_INT64": np.int64, "TYPE_INT32": np.int32}


def warmup_window(tokenizer_json: Path, length: int, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """One window of exactly ``length`` subwords (``[CLS] ... [SEP]``, no padding) of ``WARMUP_TEXT``.

    Windows end at word boundaries, so the text is encoded into a slightly longer window and cut to
    ``length`` with its ``[SEP]`` kept last.
    """
    encoder = SubwordEncoder(Tokenizer.from_file(str(tokenizer_json)), max_length=length + 16, stride=0)
    window = encoder.encode_words([w.text for w in split_words(WARMUP_TEXT)])[0]
    ids, casing = list(window.input_ids), list(window.casing_ids)
    if len(ids) > length:
        ids, casing = [*ids[: length - 1], ids[-1]], [*casing[: length - 1], casing[-1]]
    real = len(ids)
    pad = length - real  # only when the text is shorter than the window (not for length <= 512)
    arrays = {
        "input_ids": np.asarray(ids + [encoder.pad_id] * pad, dtype=np.int64),
        "attention_mask": np.asarray([1] * real + [0] * pad, dtype=np.int64),
        "casing_ids": np.asarray(casing + [0] * pad, dtype=np.int64),
    }
    return {name: arrays[name] for name in names}


def with_warmup_files(
    config: TritonModelConfig, tokenizer_json: Path, lengths: Sequence[int], batch_size: int
) -> tuple[TritonModelConfig, dict[str, bytes]]:
    """``config`` with its zero-data warm-up replaced by one real-text request per length, and the
    files those requests read (path under the model directory -> bytes)."""
    names = [tensor.name for tensor in config.inputs]
    warmups, files = [], {}
    for length in lengths:
        window = warmup_window(tokenizer_json, length, names)
        name = f"{config.name}_warmup_{length}"
        inputs = {}
        for tensor in config.inputs:
            dtype = _DTYPES.get(str(tensor.data_type))
            if dtype is None:
                raise ValueError(f"no warm-up data for input {tensor.name} of type {tensor.data_type}")
            file_name = f"{name}_{tensor.name}"
            files[f"{WARMUP_DIR}/{file_name}"] = window[tensor.name].astype(dtype).tobytes()
            inputs[tensor.name] = WarmupInput(tensor.data_type, (length,), data_file=file_name)
        warmups.append(ModelWarmup(name, batch_size, inputs))
    return dataclasses.replace(config, model_warmup=tuple(warmups)), files
