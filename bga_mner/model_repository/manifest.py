"""The manifest: everything the worker must know about an exported model, in one JSON file.

``manifest.json`` sits next to the model file in each version directory. It is the contract
between training (which writes it at export) and serving (which refuses to run a model whose
manifest, tokenizer or Triton metadata disagree), so it is validated strictly: unknown fields,
inconsistent label counts or a CRF of the wrong size are errors that name the field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bga_mner.decoding.crf import CRFParams
from bga_mner.errors import ConfigurationError
from bga_mner.preprocessing.words import PRETOKENIZER_ID

__all__ = [
    "MANIFEST_FILE",
    "CRFSpec",
    "ImageSpec",
    "Manifest",
    "ManifestError",
    "ModelCard",
    "PreprocessingSpec",
    "TensorSpec",
    "TritonDtype",
    "standard_inputs",
    "standard_outputs",
]

MANIFEST_FILE = "manifest.json"

# Triton's datatype names as they appear in model metadata (config.pbtxt says TYPE_<name>).
TritonDtype = Literal[
    "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"
]


class ManifestError(ConfigurationError):
    """A manifest that cannot be read or does not make sense; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One model input or output: per-sample dims (batch dim excluded), -1 = variable."""

    name: str = Field(min_length=1)
    dtype: TritonDtype
    dims: list[int] = Field(min_length=1)

    @field_validator("dims")
    @classmethod
    def _dims_are_sizes(cls, dims: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in dims):
            raise ValueError(f"dims must be positive or -1 (variable), got {dims}")
        return dims


class CRFSpec(_Strict):
    """The exported CRF as JSON lists (see :class:`bga_mner.decoding.CRFParams`)."""

    start: list[float]
    end: list[float]
    transitions: list[list[float]]

    @model_validator(mode="after")
    def _square(self) -> CRFSpec:
        self.to_params()  # raises ValueError with the shapes when inconsistent
        return self

    @classmethod
    def from_params(cls, crf: CRFParams) -> CRFSpec:
        return cls(**crf.to_lists())

    def to_params(self) -> CRFParams:
        return CRFParams.from_lists(self.start, self.end, self.transitions)


class PreprocessingSpec(_Strict):
    """How text becomes model inputs; serving refuses a pre-tokenizer it does not implement."""

    tokenizer_file: str = "tokenizer.json"
    pretokenizer: str = PRETOKENIZER_ID
    casing_features: bool = True


class ImageSpec(_Strict):
    """Input image preprocessing for image-aware models (square resize, then normalise)."""

    size: int = Field(gt=0)
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class ModelCard(_Strict):
    """Provenance and quality of the exported model, shown by the worker and the dashboards.

    F1 is in percent (0-100), the project's one unit for F1, as training and the papers report it.
    """

    backbone: str
    image_encoder: str | None = None
    training_data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    dev_f1: float | None = Field(default=None, ge=0.0, le=100.0, description="percent")
    test_f1: float | None = Field(default=None, ge=0.0, le=100.0, description="percent")
    exported_at: datetime
    export_seconds: float = Field(ge=0.0)
    git_commit: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


_TAG = re.compile(r"^(O|[BI]-\S+)$")


SCHEMA_VERSION: Literal[2] = 2


class Manifest(_Strict):
    """``manifest.json`` of one model version (``schema_version`` 2, see docs/contract.md).

    Version 1 stored the card's F1 as a fraction; it is read and converted to percent.
    """

    schema_version: Literal[2] = SCHEMA_VERSION
    model_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model_version: int = Field(ge=1)
    target: Literal["tensorrt", "onnxruntime", "python"]
    labels: list[str] = Field(min_length=1)
    max_length: int = Field(ge=4)
    # What the served engine accepts: a TensorRT profile refuses sequences shorter than its minimum
    # and batches larger than its maximum, so the worker pads up to ``min_length`` subwords and
    # never sends more than ``max_batch_size`` windows in one request (None: Triton's config decides).
    min_length: int = Field(default=1, ge=1)
    max_batch_size: int | None = Field(default=None, ge=1)
    # Sequence lengths the engine is warmed up and optimised for (TensorRT): each request is padded up
    # to the next one, so Triton's dynamic batcher can merge requests of one length. None: no buckets.
    sequence_buckets: list[int] | None = Field(default=None, min_length=1)
    stride: int = Field(ge=0)
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    crf: CRFSpec
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    image_aware: bool = False
    image: ImageSpec | None = None
    card: ModelCard

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Schema 1 -> 2: the card's F1 from a fraction to percent; nothing else changed."""
        if not isinstance(data, dict) or data.get("schema_version") != 1:
            return data
        card = dict(data.get("card") or {})
        for key in ("dev_f1", "test_f1"):
            if isinstance(card.get(key), int | float):
                card[key] = card[key] * 100.0
        return {**data, "schema_version": SCHEMA_VERSION, "card": card}

    @field_validator("labels")
    @classmethod
    def _bio_labels(cls, labels: list[str]) -> list[str]:
        if labels[0] != "O":
            raise ValueError(f'the first label must be "O", got {labels[0]!r}')
        bad = [label for label in labels if not _TAG.match(label)]
        if bad:
            raise ValueError(f"labels must be O, B-<type> or I-<type>; bad: {bad}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique: {labels}")
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = []
        if self.crf.to_params().num_labels != len(self.labels):
            problems.append(f"crf has {len(self.crf.start)} labels but labels has {len(self.labels)}")
        emissions = next((o for o in self.outputs if o.name == "emissions"), None)
        if emissions is None:
            problems.append(f"outputs must include 'emissions', got {[o.name for o in self.outputs]}")
        elif emissions.dims[-1] != len(self.labels):
            problems.append(
                f"output 'emissions' has dims {emissions.dims} but there are {len(self.labels)} labels "
                f"(last dim must be the number of labels)"
            )
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                problems.append(f"{kind} names must be unique: {names}")
        if self.min_length > self.max_length:
            problems.append(f"min_length {self.min_length} is above max_length {self.max_length}")
        buckets = self.sequence_buckets
        if buckets is not None and (
            buckets != sorted(set(buckets)) or buckets[0] < self.min_length or buckets[-1] != self.max_length
        ):
            problems.append(
                f"sequence_buckets {buckets} must rise strictly from at least min_length {self.min_length} "
                f"and end at max_length {self.max_length}"
            )
        if self.stride >= self.max_length - 2:
            problems.append(
                f"stride {self.stride} must be smaller than max_length - 2 = {self.max_length - 2}"
            )
        if self.image_aware and self.image is None:
            problems.append("image_aware is true but no image spec is given")
        if not self.image_aware and self.image is not None:
            problems.append("an image spec is given but image_aware is false")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def crf_params(self) -> CRFParams:
        return self.crf.to_params()

    def write(self, directory: Path) -> Path:
        """Write ``manifest.json`` into ``directory`` (created if needed); returns the file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read and validate ``directory/manifest.json``; errors name the file and the field."""
        path = Path(directory) / MANIFEST_FILE
        if not path.is_file():
            raise ManifestError(f"no {MANIFEST_FILE} in {directory}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ManifestError(f"{path} is not valid JSON: {error}") from error
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ManifestError(f"{path} is invalid:\n{_describe(error)}") from error


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(manifest)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def standard_inputs() -> list[TensorSpec]:
    """The inputs every BGA-MNER export has: INT64 ``[-1]`` per sample, batch first."""
    return [
        TensorSpec(name=name, dtype="INT64", dims=[-1])
        for name in ("input_ids", "attention_mask", "casing_ids")
    ]


def standard_outputs(num_labels: int) -> list[TensorSpec]:
    """The one output: FP32 emissions ``[-1, num_labels]`` per sample."""
    return [TensorSpec(name="emissions", dtype="FP32", dims=[-1, num_labels])]
