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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from bga_mner.model_repository import TritonModelConfig
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


@dataclass(frozen=True)
class WarmupRequest:
    """One warm-up request: ``batch_size`` copies of one window of ``length`` subwords."""

    name: str
    batch_size: int
    length: int
    files: Mapping[str, str]  # input name -> file name under warmup/
    data_types: Mapping[str, str]  # input name -> Triton data type


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


def warmup_requests(
    config: TritonModelConfig, tokenizer_json: Path, lengths: Sequence[int], batch_size: int
) -> tuple[list[WarmupRequest], dict[str, bytes]]:
    """Warm-up requests for ``lengths`` and the files they read (path under the model dir -> bytes)."""
    names = [tensor.name for tensor in config.inputs]
    requests, files = [], {}
    for length in lengths:
        window = warmup_window(tokenizer_json, length, names)
        name = f"{config.name}_warmup_{length}"
        request_files, data_types = {}, {}
        for tensor in config.inputs:
            dtype = _DTYPES.get(str(tensor.data_type))
            if dtype is None:
                raise ValueError(f"no warm-up data for input {tensor.name} of type {tensor.data_type}")
            file_name = f"{name}_{tensor.name}"
            files[f"{WARMUP_DIR}/{file_name}"] = window[tensor.name].astype(dtype).tobytes()
            request_files[tensor.name] = file_name
            data_types[tensor.name] = str(tensor.data_type)
        requests.append(WarmupRequest(name, batch_size, length, request_files, data_types))
    return requests, files


@dataclass(frozen=True)
class ConfigWithWarmupFiles(TritonModelConfig):
    """A ``TritonModelConfig`` whose warm-up requests read ``warmup/`` files (``input_data_file``)."""

    warmup_files: Sequence[WarmupRequest] = ()

    def render(self) -> str:
        text = dataclasses.replace(self, model_warmup=(), warmup_files=()).render_base()
        if not self.warmup_files:
            return text
        lines = ["model_warmup ["]
        for index, request in enumerate(self.warmup_files):
            lines += ["  {", f'    name: "{request.name}"', f"    batch_size: {request.batch_size}"]
            for input_name, file_name in request.files.items():
                lines += [
                    "    inputs {",
                    f'      key: "{input_name}"',
                    "      value {",
                    f"        data_type: {request.data_types[input_name]}",
                    f"        dims: [ {request.length} ]",
                    f'        input_data_file: "{file_name}"',
                    "      }",
                    "    }",
                ]
            lines.append("  }," if index < len(self.warmup_files) - 1 else "  }")
        lines.append("]")
        return text + "\n".join(lines) + "\n"

    def render_base(self) -> str:
        return TritonModelConfig.render(self)


def with_warmup_files(
    config: TritonModelConfig, tokenizer_json: Path, lengths: Sequence[int], batch_size: int
) -> tuple[ConfigWithWarmupFiles, dict[str, bytes]]:
    """``config`` with its zero-data warm-up replaced by real-text requests, and the files to write."""
    requests, files = warmup_requests(config, tokenizer_json, lengths, batch_size)
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["model_warmup"] = ()
    return ConfigWithWarmupFiles(**fields, warmup_files=tuple(requests)), files
