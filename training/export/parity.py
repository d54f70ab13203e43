"""Parity between the PyTorch model and an exported model: same emissions, same entities.

Both sides run the serving path, ``bga_mner.tagging.Tagger`` (its preprocessing, length
bucketing, sub-batching, gathering and batched CRF decoding); only the model behind its
``InferenceBackend`` differs. The reference is the checkpoint: its PyTorch module
(:class:`TorchBackend`), tokenizer, labels and CRF (:func:`checkpoint_repository`). The candidate is
the *repository's* manifest, tokenizer and CRF with the exported graph behind a serving backend
(``bga_mner.inference.onnx_local.OnnxBackend`` in-process; the tests also put the worker's
``TritonBackend`` there for the served model). Every request the tagger sends is recorded
(:class:`RecordingBackend`), so the emissions are compared request by request on the real, unpadded
positions. A repository that would tag posts differently from the model it came from (a wrong label
order, a stale tokenizer, a graph that bakes in the traced sequence length) fails here, at export
time and in the tests, not in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from bga_mner.errors import BgaMnerError
from bga_mner.inference import InferenceBackend, InferenceRejected
from bga_mner.model_repository import CRFSpec, LoadedRepository
from bga_mner.posts import Post
from bga_mner.preprocessing import SubwordEncoder
from bga_mner.tagging import PostError, Tagger
from training.export.targets import INPUT_NAMES

if TYPE_CHECKING:
    from bga_mner.decoding import Entity
    from bga_mner.model_repository import Manifest
    from training.checkpoint import InferenceBundle

_SENTENCE = "Barack Obama met Angela Merkel in Berlin before flying to New York with Microsoft and the UN ."

# Posts every export is checked on: short and long (windowed) posts, empty and whitespace-only text,
# emoji with ZWJ/VS16, URLs, mentions, hashtags, RTL and zero-width characters. Run them with
# ``batch_size=1`` too: a batch of one is a shape of its own.
PARITY_POSTS: tuple[str, ...] = (
    "RT @nytimes : Donald Trump visits Paris with Emmanuel Macron #G7 https://t.co/abc123",
    "",
    "   \t\n ",
    "Taylor Swift 👩‍👩‍👧 and ❤️ Kansas City Chiefs at Arrowhead !",
    "Nothing to see here, just lunch.",
    "مرحبا Dubai \u200b Mall and Apple Store in Sydney",
    " ".join([_SENTENCE] * 12),
    "NEW YORK ( Reuters ) - Goldman Sachs CEO David Solomon said on Tuesday ...",
    " ".join(f"Word{i} Smith{i} visited Town{i} ." for i in range(40)),
    "@elonmusk Tesla Model 3 vs #BMW i4 in Munich 2024",
)


class ParityError(BgaMnerError):
    """The exported model does not reproduce the PyTorch model."""


class TorchBackend:
    """``InferenceBackend`` over the PyTorch module (``InferenceBundle.module``), without gradients."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        import torch

        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in INPUT_NAMES]
            return np.asarray(self._module(*tensors).float().numpy(), dtype=np.float32)


@dataclass(frozen=True)
class Request:
    """One ``infer`` call of the tagger: what it sent and what came back."""

    inputs: dict[str, npt.NDArray[Any]]
    emissions: npt.NDArray[np.float32]

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """The real (unpadded) positions: emissions of padding are free to differ. A model without an
        attention mask input sees its padding, so all of its positions count."""
        if "attention_mask" not in self.inputs:
            return np.ones(self.inputs["input_ids"].shape, dtype=bool)
        return np.asarray(self.inputs["attention_mask"], dtype=bool)


class RecordingBackend:
    """Passes every request through to ``backend`` and keeps a copy of it and of the answer."""

    def __init__(self, backend: InferenceBackend) -> None:
        self._backend = backend
        self.requests: list[Request] = []

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        emissions = np.asarray(self._backend.infer(inputs), dtype=np.float32)
        self.requests.append(Request({name: np.array(a) for name, a in inputs.items()}, emissions.copy()))
        return emissions


@dataclass(frozen=True)
class TaggedRun:
    """The posts as the worker's tagger tagged them, with every request it sent to the model."""

    texts: list[str]
    entities: list[list[Entity]]
    requests: list[Request]

    @property
    def windows(self) -> int:
        return sum(len(r.emissions) for r in self.requests)


def checkpoint_repository(
    bundle: InferenceBundle, like: Manifest, max_length: int | None = None
) -> LoadedRepository:
    """The checkpoint's tokenizer, labels, window sizes and CRF in the form the tagger takes.

    ``like`` supplies what the checkpoint has no opinion on (model name, tensors, card); ``max_length``
    overrides the checkpoint's, as ``bga-mner export --max-length`` does.
    """
    length = bundle.max_length if max_length is None else max_length
    manifest = like.model_copy(
        update={
            "labels": list(bundle.labels),
            "crf": CRFSpec.from_params(bundle.crf),
            "max_length": length,
            "stride": bundle.stride,
            "image_aware": False,
            "image": None,
        }
    )
    encoder = SubwordEncoder.from_file(bundle.tokenizer_json, length, bundle.stride)
    return LoadedRepository(manifest, encoder, bundle.crf, bundle.tokenizer_json.parent)


def tag_posts(
    repository: LoadedRepository,
    backend: InferenceBackend,
    texts: Sequence[str] = PARITY_POSTS,
    batch_size: int = 8,
) -> TaggedRun:
    """Tag ``texts`` through ``bga_mner.tagging.Tagger`` with ``backend`` behind it, recording requests."""
    recorder = RecordingBackend(backend)
    tagger = Tagger(repository, recorder, max_batch_size=batch_size)
    posts = [Post(id=f"parity-{index}", text=text) for index, text in enumerate(texts)]
    try:
        results = tagger.tag_with_errors(posts)
    except InferenceRejected as error:  # e.g. emissions of the wrong shape
        raise ParityError(f"the tagger rejected the model's answer: {error}") from error
    errors = [r for r in results if isinstance(r, PostError)]
    if errors:
        raise ParityError(f"posts the tagger could not tag: {errors}")
    entities = [r.entities for r in results if not isinstance(r, PostError)]
    return TaggedRun(list(texts), entities, recorder.requests)


@dataclass
class ParityReport:
    posts: int
    windows: int
    entities: int
    max_abs_diff: float
    tolerance: float | None
    mismatched_posts: list[int] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        within = self.tolerance is None or self.max_abs_diff <= self.tolerance
        return within and not self.mismatched_posts

    def summary(self) -> str:
        tolerance = "not checked" if self.tolerance is None else f"tolerance {self.tolerance:g}"
        return (
            f"{self.posts} posts ({self.windows} windows, {self.entities} entities): max |Δ emissions| "
            f"{self.max_abs_diff:.3g} ({tolerance}), {self.posts - len(self.mismatched_posts)}/{self.posts} "
            "posts with identical entities"
        )


def _request_diff(index: int, ref: Request, cand: Request, details: list[str]) -> float:
    """Max |Δ| over the real positions of one request; inf (with a reason) when they are not comparable."""
    if ref.inputs.keys() != cand.inputs.keys() or any(
        not np.array_equal(ref.inputs[name], cand.inputs[name]) for name in ref.inputs
    ):
        details.append(f"request {index}: different inputs were sent (tokenizer or window sizes differ)")
        return float("inf")
    a, b = ref.emissions, cand.emissions
    rows, length = ref.mask.shape
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        details.append(f"request {index}: emissions of shape {b.shape}, expected {a.shape}")
        return float("inf")
    real = ref.mask
    if not real.any():
        return 0.0
    return float(np.max(np.abs(a[:rows, :length][real] - b[:rows, :length][real])))


def compare(reference: TaggedRun, candidate: TaggedRun, tolerance: float | None = 1e-4) -> ParityReport:
    """Emissions within ``tolerance`` (None: report only, e.g. int8) and entities identical per post.

    Entities are compared on text, type and span; scores are posteriors and may move in the last digits.
    """
    if reference.texts != candidate.texts:
        raise ValueError("the reference and the candidate tagged different posts")
    report = ParityReport(
        posts=len(reference.texts),
        windows=reference.windows,
        entities=sum(len(e) for e in reference.entities),
        max_abs_diff=0.0,
        tolerance=tolerance,
    )
    if len(reference.requests) != len(candidate.requests):
        report.max_abs_diff = float("inf")
        report.details.append(f"{len(reference.requests)} vs {len(candidate.requests)} requests")
    for index, (ref, cand) in enumerate(zip(reference.requests, candidate.requests, strict=False)):
        report.max_abs_diff = max(report.max_abs_diff, _request_diff(index, ref, cand, report.details))
    for index, (ref_entities, cand_entities) in enumerate(
        zip(reference.entities, candidate.entities, strict=True)
    ):
        ref_spans = [(e.text, e.type, e.start, e.end) for e in ref_entities]
        cand_spans = [(e.text, e.type, e.start, e.end) for e in cand_entities]
        if ref_spans != cand_spans:
            report.mismatched_posts.append(index)
            report.details.append(f"post {index}: expected {ref_spans}, got {cand_spans}")
    return report


def check(reference: TaggedRun, candidate: TaggedRun, tolerance: float | None = 1e-4) -> ParityReport:
    """:func:`compare`, raising :class:`ParityError` with the differences when parity does not hold."""
    report = compare(reference, candidate, tolerance)
    if not report.ok:
        raise ParityError(report.summary() + "\n" + "\n".join(report.details[:10]))
    return report
