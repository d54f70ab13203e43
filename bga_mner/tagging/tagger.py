"""Posts in, entities out: the one tagging path shared by the streaming worker and `bga-mner tag`.

Text goes through the same preprocessing as training (``bga_mner.preprocessing``), windows of a
whole batch of posts are sorted by length and cut into sub-batches padded only to their longest
window (length bucketing: tweets are short, so padding to the model's maximum would mostly
compute padding), emissions of each word's first subword are gathered from the window that owns
the word, and ``bga_mner.decoding`` turns them into entities with exact character spans (one batched
decoding call for all posts of the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from bga_mner.decoding import decode_batch, gather_word_emissions
from bga_mner.images import ImageError, ImageSource, InlineImages, image_tensor
from bga_mner.inference import InferenceBackend, InferenceRejected
from bga_mner.posts import Post
from bga_mner.preprocessing import EncodedWindow, Word, pad_batch, split_words
from bga_mner.tagging.outcomes import PostError, PostRejected, TaggedPost

if TYPE_CHECKING:
    from bga_mner.model_repository import ImageSpec, LoadedRepository

Padding = Literal["bucketed", "max_length"]
TEXT_INPUTS = ("input_ids", "attention_mask", "casing_ids")  # what the preprocessing produces
# Integer dtypes a text input may be exported with; the preprocessing's int64 converts losslessly.
_TEXT_DTYPES: dict[str, type[np.integer[Any]]] = {"INT64": np.int64, "INT32": np.int32}


@dataclass(frozen=True)
class PreparedPost:
    """One post after the work that is done once per post (words, windows, image), before the model.

    ``outcome`` is already known for posts that need no model (no words) or can never be tagged (a
    ``PostError``: an undecodable image, or any failure while preparing that post alone).
    """

    post: Post
    words: list[Word] = field(default_factory=list)
    windows: list[EncodedWindow] = field(default_factory=list)
    image: npt.NDArray[Any] | None = None
    outcome: TaggedPost | PostError | None = None


@dataclass
class _Item:
    post_index: int
    window: EncodedWindow
    image: npt.NDArray[Any] | None
    emissions: npt.NDArray[Any] = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))


class Tagger:
    """Tags batches of posts with one model; safe to share between threads if the backend is.

    Tagging is two steps so that a retry repeats only the model call: ``prepare`` does the per-post
    work once (words, subword windows, the image: a URL is fetched once, not on every retry) and
    never raises for one post; ``infer`` calls the model and decodes, and may be repeated.
    """

    def __init__(
        self,
        repository: LoadedRepository,
        backend: InferenceBackend,
        max_batch_size: int = 32,
        images: ImageSource | None = None,
        padding: Padding = "bucketed",
        concurrency: int = 1,
    ) -> None:
        """``max_batch_size`` is the windows per model request; the batch of posts handed to ``infer``
        is the window the sub-batches are length-sorted across (larger batches, less padding).
        ``concurrency`` requests of one batch are sent at once (a server such as Triton merges and
        overlaps them; in-process there is nothing to gain). ``padding="max_length"`` pads every
        sub-batch to the manifest's max length in arrival order: what a static-shape engine needs, and
        the baseline the throughput benchmark compares. Sub-batches are never larger than the
        manifest's ``max_batch_size`` nor padded to fewer subwords than its ``min_length``, and a
        manifest with ``sequence_buckets`` gets each request padded up to the next bucket (what the
        engine was optimised for, and what lets the dynamic batcher merge requests)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._manifest = repository.manifest
        self._encoder = repository.encoder
        self._crf = repository.crf
        self._labels = list(self._manifest.labels)
        self._backend = backend
        limit = self._manifest.max_batch_size
        self._max_batch_size = max_batch_size if limit is None else min(max_batch_size, limit)
        self._images = images if images is not None else InlineImages()
        self._padding = padding
        self._pad_id = int(self._encoder.pad_id)
        self._text_inputs, self._image_input = _request_inputs(repository)
        self.model_version = str(self._manifest.model_version)
        self._requests = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="model-request")
            if concurrency > 1
            else None
        )

    def tag(self, posts: Sequence[Post]) -> list[TaggedPost]:
        """Entities of every post, in order; raises ``PostRejected`` if any post can never be tagged
        and ``InferenceUnavailable`` if the model cannot be reached (retry the whole call)."""
        results = self.tag_with_errors(posts)
        errors = [r for r in results if isinstance(r, PostError)]
        if errors:
            raise PostRejected(errors)
        return [r for r in results if isinstance(r, TaggedPost)]

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        """Like ``tag``, but a post that can never be tagged becomes a ``PostError`` in its place."""
        return self.infer(self.prepare(posts))

    def prepare(self, posts: Sequence[Post]) -> list[PreparedPost]:
        """The per-post work, once. A failure of one post (its image, its text) becomes its ``PostError``
        with the reason; it never fails the batch."""
        prepared = [self._prepare_one(post) for post in posts]
        pending = [index for index, one in enumerate(prepared) if one.outcome is None]
        for index, windows in zip(pending, self._encode([prepared[i] for i in pending]), strict=True):
            one = prepared[index]
            prepared[index] = (
                PreparedPost(one.post, outcome=windows)
                if isinstance(windows, PostError)
                else PreparedPost(one.post, one.words, windows, one.image)
            )
        return prepared

    def infer(self, prepared: Sequence[PreparedPost]) -> list[TaggedPost | PostError]:
        """Run the model over prepared posts and decode; one outcome per post, in order.

        Raises ``InferenceUnavailable`` (retry the call) or ``InferenceRejected`` (the model refused a
        request: the caller may split the batch to find the posts it refuses).
        """
        order = [index for index, one in enumerate(prepared) if one.outcome is None]
        items = [
            _Item(index, window, prepared[index].image)
            for index in order
            for window in prepared[index].windows
        ]
        chunks = self._sub_batches(items)
        requests = [self._inputs(chunk) for chunk in chunks]
        if self._requests is not None and len(requests) > 1:
            answers = list(self._requests.map(self._backend.infer, requests))
        else:
            answers = [self._backend.infer(request) for request in requests]
        for chunk, emissions in zip(chunks, answers, strict=True):
            longest = max(len(item.window.input_ids) for item in chunk)
            if emissions.ndim != 3 or emissions.shape[0] != len(chunk) or emissions.shape[1] < longest:
                raise InferenceRejected(
                    f"emissions of shape {emissions.shape} for {len(chunk)} windows "
                    f"of up to {longest} subwords"
                )
            for row, item in enumerate(chunk):
                item.emissions = emissions[row, : len(item.window.input_ids)]

        windows_of: dict[int, list[_Item]] = {index: [] for index in order}
        for item in items:  # still in window order within each post
            windows_of[item.post_index].append(item)
        # One vectorised CRF pass over every post of the batch: per-post decoding would cost more
        # than a GPU model's forward pass.
        word_emissions = [
            gather_word_emissions([i.window for i in own], [i.emissions for i in own])
            for own in (windows_of[index] for index in order)
        ]
        decoded = decode_batch(
            [prepared[index].post.text for index in order],
            [prepared[index].words for index in order],
            word_emissions,
            self._labels,
            self._crf,
        )
        outcomes: list[TaggedPost | PostError | None] = [one.outcome for one in prepared]
        for index, entities in zip(order, decoded, strict=True):
            outcomes[index] = TaggedPost(prepared[index].post.id, entities, self.model_version)
        return [outcome for outcome in outcomes if outcome is not None]

    def _prepare_one(self, post: Post) -> PreparedPost:
        try:
            image = self._load_image(post) if self._image_input is not None else None
            words = split_words(post.text)
        except ImageError as exc:
            return PreparedPost(post, outcome=PostError(post.id, exc.reason, exc.detail))
        except Exception as exc:  # one post must never fail the batch (or crash-loop the worker)
            return PreparedPost(post, outcome=_unprocessable(post, exc))
        if not words:
            return PreparedPost(post, outcome=TaggedPost(post.id, [], self.model_version))
        return PreparedPost(post, words, image=image)

    def _encode(self, posts: list[PreparedPost]) -> list[list[EncodedWindow] | PostError]:
        """Windows of every post in one tokenizer call; should that fail, post by post (to find it)."""
        try:
            return list(self._encoder.encode_many([[w.text for w in one.words] for one in posts]))
        except Exception:
            results: list[list[EncodedWindow] | PostError] = []
            for one in posts:
                try:
                    results.append(self._encoder.encode_words([w.text for w in one.words]))
                except Exception as exc:
                    results.append(_unprocessable(one.post, exc))
            return results

    def _sub_batches(self, items: list[_Item]) -> list[list[_Item]]:
        ordered = (
            sorted(items, key=lambda item: len(item.window.input_ids))
            if self._padding == "bucketed"
            else items
        )
        size = self._max_batch_size
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    def _inputs(self, chunk: list[_Item]) -> dict[str, npt.NDArray[Any]]:
        padded = pad_batch([item.window for item in chunk], self._pad_id)
        inputs = {name: padded[name].astype(dtype, copy=False) for name, dtype in self._text_inputs}
        inputs = _pad_to(inputs, self._padded_length(inputs["input_ids"].shape[1]), self._pad_id)
        if self._image_input is not None:
            inputs[self._image_input] = self._image_batch(chunk)
        return inputs

    def _padded_length(self, longest: int) -> int:
        manifest = self._manifest
        if self._padding == "max_length":
            return int(manifest.max_length)
        buckets = manifest.sequence_buckets or []
        bucket = next((b for b in buckets if b >= longest), longest)
        return max(manifest.min_length, bucket)

    def _image_batch(self, chunk: list[_Item]) -> npt.NDArray[Any]:
        """Posts without an image get an all-zero (mean) image: what the model saw for missing images."""
        size = self._image_spec().size
        batch = np.zeros((len(chunk), 3, size, size), dtype=np.float32)
        for row, item in enumerate(chunk):
            if item.image is not None:
                batch[row] = item.image
        return batch

    def _load_image(self, post: Post) -> npt.NDArray[Any] | None:
        if post.image is None:
            return None
        image = self._images.load(post.image)
        if image is None:
            return None
        spec = self._image_spec()
        return image_tensor(image, spec.size, spec.mean, spec.std)

    def _image_spec(self) -> ImageSpec:
        if self._manifest.image is None:  # the manifest validates this; keeps mypy and readers sure
            raise ValueError("an image-aware manifest without an image spec")
        return self._manifest.image


def _unprocessable(post: Post, error: Exception) -> PostError:
    return PostError(post.id, "unprocessable", f"{type(error).__name__}: {error}"[:500])


def _request_inputs(
    repository: LoadedRepository,
) -> tuple[list[tuple[str, type[np.integer[Any]]]], str | None]:
    """The request's text inputs (name, dtype) and image input name, exactly as the manifest lists them.

    The request is built from the manifest, not from a fixed list: a model exported without, say,
    ``casing_ids`` must not be sent it (Triton refuses unknown inputs). An input the preprocessing
    cannot produce is refused here, at start-up, rather than as a rejected request per batch.
    """
    manifest = repository.manifest
    text: list[tuple[str, type[np.integer[Any]]]] = []
    others = []
    for tensor in manifest.inputs:
        if tensor.name not in TEXT_INPUTS:
            others.append(tensor)
            continue
        dtype = _TEXT_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise ValueError(
                f"the manifest's input {tensor.name!r} has dtype {tensor.dtype}; "
                f"the preprocessing produces one of {sorted(_TEXT_DTYPES)}"
            )
        text.append((tensor.name, dtype))
    if "input_ids" not in [name for name, _ in text]:
        raise ValueError(f"the manifest lists no 'input_ids' input: {[t.name for t in manifest.inputs]}")
    if not manifest.image_aware:
        if others:
            raise ValueError(
                f"the manifest asks for inputs {[t.name for t in others]} that the text preprocessing "
                f"cannot produce (it produces {list(TEXT_INPUTS)})"
            )
        return text, None
    if len(others) != 1:
        raise ValueError(
            f"an image-aware model needs exactly one image input besides {TEXT_INPUTS}, "
            f"got {[t.name for t in others]}"
        )
    if str(others[0].dtype) != "FP32":
        raise ValueError(
            f"the image input {others[0].name!r} must be FP32, the manifest says {others[0].dtype}"
        )
    return text, others[0].name


def _pad_to(inputs: dict[str, npt.NDArray[Any]], length: int, pad_id: int) -> dict[str, npt.NDArray[Any]]:
    padded: dict[str, npt.NDArray[Any]] = {}
    for name, array in inputs.items():
        extra = length - array.shape[1]
        fill = pad_id if name == "input_ids" else 0
        padded[name] = (
            np.pad(array, ((0, 0), (0, max(0, extra))), constant_values=fill) if extra > 0 else array
        )
    return padded
