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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from bga_mner.decoding import decode_batch, gather_word_emissions
from bga_mner.images import ImageError, ImageSource, InlineImages, image_tensor
from bga_mner.inference import InferenceBackend, InferenceRejected
from bga_mner.preprocessing import EncodedWindow, Word, pad_batch, split_words
from bga_mner.tagging.outcomes import PostError, PostRejected, TaggedPost

if TYPE_CHECKING:
    from bga_mner.model_repository import ImageSpec, LoadedRepository
    from bga_mner.posts import Post

Padding = Literal["bucketed", "max_length"]
TEXT_INPUTS = ("input_ids", "attention_mask", "casing_ids")  # what the preprocessing produces
# Integer dtypes a text input may be exported with; the preprocessing's int64 converts losslessly.
_TEXT_DTYPES: dict[str, type[np.integer[Any]]] = {"INT64": np.int64, "INT32": np.int32}


@dataclass
class _Item:
    post_index: int
    window: EncodedWindow
    emissions: npt.NDArray[Any] = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))


class Tagger:
    """Tags batches of posts with one model; safe to share between threads if the backend is."""

    def __init__(
        self,
        repository: LoadedRepository,
        backend: InferenceBackend,
        max_batch_size: int = 32,
        images: ImageSource | None = None,
        padding: Padding = "bucketed",
    ) -> None:
        """``padding="max_length"`` pads every sub-batch to the manifest's max length in arrival
        order: what a static-shape engine needs, and the baseline the throughput benchmark compares."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._manifest = repository.manifest
        self._encoder = repository.encoder
        self._crf = repository.crf
        self._labels = list(self._manifest.labels)
        self._backend = backend
        self._max_batch_size = max_batch_size
        self._images = images if images is not None else InlineImages()
        self._padding = padding
        self._pad_id = int(self._encoder.pad_id)
        self._text_inputs, self._image_input = _request_inputs(repository)
        self.model_version = str(self._manifest.model_version)

    def tag(self, posts: Sequence[Post]) -> list[TaggedPost]:
        """Entities of every post, in order; raises ``PostRejected`` if any post's image is unusable
        and ``InferenceUnavailable`` if the model cannot be reached (retry the whole call)."""
        results = self.tag_with_errors(posts)
        errors = [r for r in results if isinstance(r, PostError)]
        if errors:
            raise PostRejected(errors)
        return [r for r in results if isinstance(r, TaggedPost)]

    def tag_with_errors(self, posts: Sequence[Post]) -> list[TaggedPost | PostError]:
        """Like ``tag``, but a post with an unusable image becomes a ``PostError`` in its place."""
        outcomes: list[TaggedPost | PostError | None] = [None] * len(posts)
        images: dict[int, npt.NDArray[Any]] = {}
        if self._image_input is not None:
            for index, post in enumerate(posts):
                try:
                    pixels = self._load_image(post)
                except ImageError as exc:
                    outcomes[index] = PostError(post.id, exc.reason, exc.detail)
                    continue
                if pixels is not None:
                    images[index] = pixels

        words_of: dict[int, list[Word]] = {}
        for index, post in enumerate(posts):
            if outcomes[index] is not None:
                continue
            words = split_words(post.text)
            if words:
                words_of[index] = words
            else:
                outcomes[index] = TaggedPost(post.id, [], self.model_version)
        order = list(words_of)
        encoded = self._encoder.encode_many([[w.text for w in words_of[index]] for index in order])
        items = [
            _Item(index, window) for index, windows in zip(order, encoded, strict=True) for window in windows
        ]

        for chunk in self._sub_batches(items):
            emissions = self._backend.infer(self._inputs(chunk, images))
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
            [posts[index].text for index in order],
            [words_of[index] for index in order],
            word_emissions,
            self._labels,
            self._crf,
        )
        for index, entities in zip(order, decoded, strict=True):
            outcomes[index] = TaggedPost(posts[index].id, entities, self.model_version)
        return [outcome for outcome in outcomes if outcome is not None]

    def _sub_batches(self, items: list[_Item]) -> list[list[_Item]]:
        ordered = (
            sorted(items, key=lambda item: len(item.window.input_ids))
            if self._padding == "bucketed"
            else items
        )
        size = self._max_batch_size
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    def _inputs(self, chunk: list[_Item], images: dict[int, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        padded = pad_batch([item.window for item in chunk], self._pad_id)
        inputs = {name: padded[name].astype(dtype, copy=False) for name, dtype in self._text_inputs}
        if self._padding == "max_length":
            inputs = _pad_to(inputs, int(self._manifest.max_length), self._pad_id)
        if self._image_input is not None:
            inputs[self._image_input] = self._image_batch(chunk, images)
        return inputs

    def _image_batch(self, chunk: list[_Item], images: dict[int, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """Posts without an image get an all-zero (mean) image: what the model saw for missing images."""
        size = self._image_spec().size
        batch = np.zeros((len(chunk), 3, size, size), dtype=np.float32)
        for row, item in enumerate(chunk):
            pixels = images.get(item.post_index)
            if pixels is not None:
                batch[row] = pixels
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
