"""The shared tagging path on a real (tiny) exported model, in-process with ONNX Runtime."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest
from PIL import Image

from bga_mner.inference import InferenceUnavailable
from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.model_repository import LoadedRepository, open_repository
from bga_mner.posts import ImageRef, Post
from bga_mner.tagging import PostError, PostRejected, TaggedPost, Tagger, entity_to_dict

TRICKY = [
    "I met Taylor Swift in London today",
    "",
    "   ",
    "RT @BBCNews : Barack Obama visits #Berlin http://t.co/abc 🇩🇪👍🏽",
    "Zero\u200bwidth and Ｆｕｌｌｗｉｄｔｈ and Café Olé",
    "مرحبا Dubai ‏Emirates‏ trip",
    "family 👨‍👩‍👧 trip to New York with ❤️ NASA",
    "all lower case words only",
]


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path) -> LoadedRepository:
    return open_repository(tiny_model_repository)


@pytest.fixture(scope="module")
def backend(repository: LoadedRepository) -> OnnxBackend:
    return OnnxBackend(repository.version_dir / "model.onnx", threads=1)


@pytest.fixture(scope="module")
def tagger(repository: LoadedRepository, backend: OnnxBackend) -> Tagger:
    return Tagger(repository, backend, max_batch_size=4)


def _posts(texts: list[str]) -> list[Post]:
    return [Post(id=f"p{i}", text=text) for i, text in enumerate(texts)]


def _as_dicts(tagged: list[TaggedPost]) -> list[tuple[str, list[dict[str, object]]]]:
    return [(t.post_id, [entity_to_dict(e) for e in t.entities]) for t in tagged]


def test_entities_are_exact_spans_of_the_original_text(tagger: Tagger) -> None:
    posts = _posts(TRICKY)
    tagged = tagger.tag(posts)
    assert [t.post_id for t in tagged] == [p.id for p in posts]
    assert all(t.model_version == "1" for t in tagged)
    found = 0
    for post, result in zip(posts, tagged, strict=True):
        for entity in result.entities:
            assert entity.text == post.text[entity.start : entity.end]
            assert entity.text == entity.text.strip()
            assert entity.type in {"PER", "LOC", "ORG", "MISC"}
            assert 0.0 < entity.score <= 1.0
            found += 1
    assert found >= 5, "the tiny model is biased to tag capitalised words; it found almost nothing"
    assert tagged[1].entities == [] and tagged[2].entities == []
    assert tagged[-1].entities == []


def test_the_tiny_model_tags_what_it_was_built_to(tagger: Tagger) -> None:
    (result,) = tagger.tag([Post(id="x", text="we saw NASA and #space stuff")])
    assert [(e.text, e.type) for e in result.entities] == [("NASA", "ORG"), ("#space", "MISC")]


def test_batch_composition_and_padding_do_not_change_results(
    repository: LoadedRepository, backend: OnnxBackend, tagger: Tagger
) -> None:
    posts = _posts(TRICKY * 3)
    together = _as_dicts(tagger.tag(posts))
    one_by_one = [_as_dicts(tagger.tag([post]))[0] for post in posts]
    padded = _as_dicts(Tagger(repository, backend, max_batch_size=5, padding="max_length").tag(posts))
    for reference, other in ((together, one_by_one), (together, padded)):
        for (id_a, entities_a), (id_b, entities_b) in zip(reference, other, strict=True):
            assert id_a == id_b
            assert [{k: v for k, v in e.items() if k != "score"} for e in entities_a] == [
                {k: v for k, v in e.items() if k != "score"} for e in entities_b
            ]
            assert [e["score"] for e in entities_a] == pytest.approx(
                [e["score"] for e in entities_b], abs=1e-5
            )


class RecordingBackend:
    """Passes through to ONNX Runtime and remembers the shapes it was asked for."""

    def __init__(self, inner: OnnxBackend) -> None:
        self.inner = inner
        self.shapes: list[tuple[int, ...]] = []
        self.requests: list[dict[str, str]] = []  # input name -> dtype, per request

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        self.shapes.append(tuple(inputs["input_ids"].shape))
        self.requests.append({name: str(array.dtype) for name, array in inputs.items()})
        return self.inner.infer(inputs)


def test_length_bucketing_pads_less_than_padding_to_the_max(
    repository: LoadedRepository, backend: OnnxBackend
) -> None:
    texts = ["short one", "Taylor " * 40, "mid sized post with a few words", "x", "Paris " * 20, "y z"] * 2
    bucketed, padded = RecordingBackend(backend), RecordingBackend(backend)
    Tagger(repository, bucketed, max_batch_size=4).tag(_posts(texts))
    Tagger(repository, padded, max_batch_size=4, padding="max_length").tag(_posts(texts))
    assert all(shape[1] == repository.manifest.max_length for shape in padded.shapes)
    assert sum(b * s for b, s in bucketed.shapes) < 0.6 * sum(b * s for b, s in padded.shapes)
    assert sum(b for b, _ in bucketed.shapes) == sum(b for b, _ in padded.shapes)
    assert all(b <= 4 for b, _ in bucketed.shapes)


def test_long_posts_are_windowed_and_lose_no_entity(tagger: Tagger, repository: LoadedRepository) -> None:
    """A post of several windows: every NASA (ORG by construction) is found, also at window borders."""
    words = []
    for i in range(150):
        words.append("NASA" if i % 9 == 4 else f"word{i % 13}")
    text = " ".join(words)
    windows = repository.encoder.encode_words(text.split())
    assert len(windows) >= 3
    (result,) = tagger.tag([Post(id="long", text=text)])
    starts = [i for i in range(len(text)) if text.startswith("NASA", i)]
    assert [(e.start, e.type) for e in result.entities] == [(s, "ORG") for s in starts]


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_reach_an_image_aware_model(tiny_image_model_repository: Path) -> None:
    repository = open_repository(tiny_image_model_repository)
    tagger = Tagger(repository, OnnxBackend(repository.version_dir / "model.onnx", threads=1))
    text = "ordinary words only"
    results = tagger.tag_with_errors(
        [
            Post(id="white", text=text, image=ImageRef(data=_png((255, 255, 255)))),
            Post(id="none", text=text),
            Post(
                id="url-only", text=text, image=ImageRef(url="https://example.com/a.png")
            ),  # fetching is off
            Post(id="broken", text=text, image=ImageRef(data=b"\x89PNG\r\n\x1a\n broken")),
        ]
    )
    white, none, url_only, broken = results
    assert isinstance(white, TaggedPost) and white.entities, "a bright image pushes words to MISC"
    assert isinstance(none, TaggedPost) and none.entities == []
    assert isinstance(url_only, TaggedPost) and url_only.entities == []
    assert broken == PostError("broken", "undecodable_image", broken.detail)  # type: ignore[union-attr]
    with pytest.raises(PostRejected) as info:
        tagger.tag([Post(id="broken", text=text, image=ImageRef(data=b"nope"))])
    assert info.value.errors[0].reason == "undecodable_image"


def test_text_only_models_ignore_images(tagger: Tagger) -> None:
    (result,) = tagger.tag([Post(id="img", text="we saw NASA", image=ImageRef(data=b"not even an image"))])
    assert [(e.text, e.type) for e in result.entities] == [("NASA", "ORG")]


class DownBackend:
    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        raise InferenceUnavailable("Triton is down")


def test_backend_unavailability_propagates(repository: LoadedRepository) -> None:
    with pytest.raises(InferenceUnavailable):
        Tagger(repository, DownBackend()).tag(_posts(["Some Text"]))
    # Posts without words never reach the backend.
    assert Tagger(repository, DownBackend()).tag(_posts(["", " "]))[0].entities == []


def _without_casing_ids(repository: LoadedRepository, destination: Path) -> LoadedRepository:
    """The tiny model re-exported without ``casing_ids`` and with an INT32 ``attention_mask``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(repository.version_dir / "model.onnx"))
    graph = model.graph
    kept = [i for i in graph.input if i.name != "casing_ids"]
    del graph.input[:]
    graph.input.extend(kept)
    for tensor in graph.input:
        if tensor.name == "attention_mask":
            tensor.type.tensor_type.elem_type = TensorProto.INT32
    nodes = []
    for node in graph.node:
        if "casing_ids" in node.input:
            continue
        if "casing_vectors" in node.input:
            node = helper.make_node("Identity", ["word_vectors"], list(node.output))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    destination.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(destination / "model.onnx"))
    inputs = [
        spec.model_copy(update={"dtype": "INT32"}) if spec.name == "attention_mask" else spec
        for spec in repository.manifest.inputs
        if spec.name != "casing_ids"
    ]
    manifest = repository.manifest.model_copy(update={"inputs": inputs})
    return dataclasses.replace(repository, manifest=manifest, version_dir=destination)


def test_the_request_holds_exactly_the_manifests_inputs(repository: LoadedRepository, tmp_path: Path) -> None:
    other = _without_casing_ids(repository, tmp_path / "1")
    recording = RecordingBackend(OnnxBackend(other.version_dir / "model.onnx", threads=1))
    for padding in ("bucketed", "max_length"):
        tagged = Tagger(other, recording, max_batch_size=2, padding=padding).tag(_posts(TRICKY))
        assert [t.post_id for t in tagged] == [p.id for p in _posts(TRICKY)]
    assert recording.requests
    assert all(r == {"input_ids": "int64", "attention_mask": "int32"} for r in recording.requests)

    standard = RecordingBackend(OnnxBackend(repository.version_dir / "model.onnx", threads=1))
    Tagger(repository, standard).tag(_posts(TRICKY))
    assert standard.requests[0] == {"input_ids": "int64", "attention_mask": "int64", "casing_ids": "int64"}


def test_an_input_the_preprocessing_cannot_produce_is_refused_at_start_up(
    repository: LoadedRepository, backend: OnnxBackend, tiny_image_model_repository: Path
) -> None:
    from bga_mner.model_repository import TensorSpec

    manifest = repository.manifest
    extra = TensorSpec(name="token_type_ids", dtype="INT64", dims=[-1])
    with_extra = dataclasses.replace(
        repository, manifest=manifest.model_copy(update={"inputs": [*manifest.inputs, extra]})
    )
    with pytest.raises(ValueError, match="token_type_ids"):
        Tagger(with_extra, backend)

    floats = [
        s.model_copy(update={"dtype": "FP32"}) if s.name == "casing_ids" else s for s in manifest.inputs
    ]
    with pytest.raises(ValueError, match="'casing_ids' has dtype FP32"):
        Tagger(
            dataclasses.replace(repository, manifest=manifest.model_copy(update={"inputs": floats})), backend
        )

    no_ids = [s for s in manifest.inputs if s.name != "input_ids"]
    with pytest.raises(ValueError, match="no 'input_ids'"):
        Tagger(
            dataclasses.replace(repository, manifest=manifest.model_copy(update={"inputs": no_ids})), backend
        )

    image = open_repository(tiny_image_model_repository)
    half = [
        s.model_copy(update={"dtype": "FP16"}) if s.name == "pixel_values" else s
        for s in image.manifest.inputs
    ]
    with pytest.raises(ValueError, match="'pixel_values' must be FP32"):
        Tagger(
            dataclasses.replace(image, manifest=image.manifest.model_copy(update={"inputs": half})), backend
        )


def test_rejects_nonsense_batch_size(repository: LoadedRepository, backend: OnnxBackend) -> None:
    with pytest.raises(ValueError):
        Tagger(repository, backend, max_batch_size=0)


class ExplodingImages:
    """An image source that fails in a way nobody planned for (e.g. a URL parser's ValueError)."""

    def __init__(self) -> None:
        self.loads = 0

    def load(self, ref: ImageRef) -> Image.Image | None:
        self.loads += 1
        if ref.url == "https://[::1/x":
            raise ValueError("Invalid IPv6 URL")
        return None


def test_a_post_that_fails_unexpectedly_is_isolated_and_the_batch_goes_on(
    tiny_image_model_repository: Path,
) -> None:
    repository = open_repository(tiny_image_model_repository)
    images = ExplodingImages()
    tagger = Tagger(repository, OnnxBackend(repository.version_dir / "model.onnx", threads=1), images=images)
    bad = Post(id="bad", text="NASA", image=ImageRef(url="https://[::1/x"))
    results = tagger.tag_with_errors([Post(id="a", text="we saw NASA"), bad, Post(id="b", text="and Paris")])
    assert [type(r).__name__ for r in results] == ["TaggedPost", "PostError", "TaggedPost"]
    assert results[1] == PostError("bad", "unprocessable", "ValueError: Invalid IPv6 URL")


def test_the_model_call_can_be_repeated_without_repeating_the_per_post_work(
    tiny_image_model_repository: Path,
) -> None:
    """A retry after ``InferenceUnavailable`` calls ``infer`` again: images are not fetched again."""
    repository = open_repository(tiny_image_model_repository)
    images = ExplodingImages()
    flaky = FlakyBackend(OnnxBackend(repository.version_dir / "model.onnx", threads=1), failures=2)
    tagger = Tagger(repository, flaky, images=images)
    prepared = tagger.prepare(
        [Post(id="p", text="we saw NASA", image=ImageRef(url="https://example.com/a.png"))]
    )
    for _ in range(2):
        with pytest.raises(InferenceUnavailable):
            tagger.infer(prepared)
    (result,) = tagger.infer(prepared)
    assert isinstance(result, TaggedPost) and images.loads == 1


class FlakyBackend:
    def __init__(self, backend: OnnxBackend, failures: int) -> None:
        self._backend = backend
        self.failures = failures

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        if self.failures:
            self.failures -= 1
            raise InferenceUnavailable("down (test)")
        return self._backend.infer(inputs)


class ShapeRecorder:
    def __init__(self, backend: OnnxBackend) -> None:
        self._backend = backend
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        self.shapes.append(tuple(inputs["input_ids"].shape))
        return self._backend.infer(inputs)


def test_requests_respect_the_engines_minimum_length_and_maximum_batch(
    repository: LoadedRepository, backend: OnnxBackend
) -> None:
    """A TensorRT profile of 8..128 subwords refuses "gm" (3 subwords): the manifest says so, the
    tagger pads up to it, and never sends more windows than the engine's maximum batch."""
    engine = dataclasses.replace(
        repository, manifest=repository.manifest.model_copy(update={"min_length": 8, "max_batch_size": 2})
    )
    recorder = ShapeRecorder(backend)
    tagged = Tagger(engine, recorder, max_batch_size=32).tag(_posts(["gm", "gm", "gm", "we saw NASA"]))
    assert all(length >= 8 for _, length in recorder.shapes)
    assert all(batch <= 2 for batch, _ in recorder.shapes)
    assert _as_dicts(tagged) == _as_dicts(
        Tagger(repository, backend).tag(_posts(["gm", "gm", "gm", "we saw NASA"]))
    )


def test_requests_are_padded_up_to_the_engines_sequence_buckets(
    repository: LoadedRepository, backend: OnnxBackend
) -> None:
    engine = dataclasses.replace(
        repository,
        manifest=repository.manifest.model_copy(update={"min_length": 8, "sequence_buckets": [8, 16, 24]}),
    )
    recorder = ShapeRecorder(backend)
    texts = ["gm", "Barack Obama visits Paris with Angela Merkel and the UN", *TRICKY]
    tagged = Tagger(engine, recorder, max_batch_size=2).tag(_posts(texts))
    assert {length for _, length in recorder.shapes} <= {8, 16, 24}
    assert _as_dicts(tagged) == _as_dicts(Tagger(repository, backend).tag(_posts(texts)))


def test_concurrent_requests_give_the_same_entities_in_the_same_order(
    repository: LoadedRepository, backend: OnnxBackend
) -> None:
    posts = _posts(TRICKY * 5)
    sequential = Tagger(repository, backend, max_batch_size=2).tag(posts)
    concurrent = Tagger(repository, backend, max_batch_size=2, concurrency=3).tag(posts)
    assert _as_dicts(concurrent) == _as_dicts(sequential)
