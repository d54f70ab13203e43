"""Parity: the exported model, run through the worker's own tagger, reproduces the PyTorch model.

Both sides go through ``worker.tagging.Tagger`` (the streaming worker's serving path); only the
backend differs. The candidate side reads everything from the exported repository (tokenizer, max
length, stride, labels, CRF: ``open_repository``) and runs the graph with the worker's
``OnnxBackend`` in-process or its ``TritonBackend`` against the real Triton of the local stack. The
reference is the checkpoint's PyTorch module with the checkpoint's own tokenizer, labels and CRF.
Emissions must agree within 1e-4 and the decoded entities must be identical, on posts that include a
batch of one, posts longer than max_length (several windows) and empty or whitespace-only text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.model_repository import LoadedRepository, open_repository
from bga_mner.preprocessing import split_words
from bga_mner.stack.local import LocalStack
from bga_mner.stack.models import load_model
from training.export import parity
from worker.inference.triton import TritonBackend
from worker.settings import TritonSettings

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4
POSTS = list(parity.PARITY_POSTS)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path, python_repository: Path) -> dict[int, parity.TaggedRun]:
    """PyTorch tagging of POSTS per batch size (padding differs with batch composition)."""
    from training.checkpoint import load_for_inference

    bundle = load_for_inference(tiny_checkpoint)
    repository = parity.checkpoint_repository(bundle, open_repository(python_repository).manifest)
    backend = parity.TorchBackend(bundle.module)
    return {size: parity.tag_posts(repository, backend, POSTS, size) for size in (1, 8)}


def _onnx(repository: Path) -> OnnxBackend:
    return OnnxBackend(repository / "bga_mner" / "1" / "model.onnx", threads=2)


def test_the_posts_cover_the_required_cases(
    reference: dict[int, parity.TaggedRun], python_repository: Path
) -> None:
    encoder = open_repository(python_repository).encoder
    words = [[w.text for w in split_words(text)] for text in POSTS]
    windows = [len(encoder.encode_words(w)) for w in words if w]  # posts without words are not sent
    assert max(windows) >= 3, "no post is longer than max_length"
    run = reference[8]
    assert run.windows == sum(windows), "the tagger did not send every window"
    assert all(len(r.emissions) == 1 for r in reference[1].requests), "batch size 1 was not honoured"
    empties = [entities for text, entities in zip(run.texts, run.entities, strict=True) if not text.strip()]
    assert len(empties) == 2 and all(e == [] for e in empties)
    assert sum(len(e) for e in run.entities) >= 20, "too few entities for entity parity to mean much"
    assert len({e.type for entities in run.entities for e in entities}) == 4


@pytest.mark.parametrize("batch_size", [1, 8])
def test_onnx_runtime_in_process(
    python_repository: Path, reference: dict[int, parity.TaggedRun], batch_size: int
) -> None:
    candidate = parity.tag_posts(
        open_repository(python_repository), _onnx(python_repository), POSTS, batch_size
    )
    report = parity.check(reference[batch_size], candidate, TOLERANCE)
    assert report.max_abs_diff <= TOLERANCE and not report.mismatched_posts
    assert report.windows == candidate.windows and len(candidate.requests) == len(
        reference[batch_size].requests
    )


def _tampered_copy(repository: Path, destination: Path) -> Path:
    """The same export with two labels swapped in manifest.json (still a valid manifest)."""
    shutil.copytree(repository, destination, symlinks=True)
    path = destination / "bga_mner" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    labels = manifest["labels"]
    b_per, b_loc = labels.index("B-PER"), labels.index("B-LOC")
    labels[b_per], labels[b_loc] = labels[b_loc], labels[b_per]
    path.write_text(json.dumps(manifest))
    open_repository(destination)  # still loads: only parity can tell
    return destination


def test_a_wrong_label_order_fails_parity(
    python_repository: Path, reference: dict[int, parity.TaggedRun], tmp_path: Path
) -> None:
    tampered = _tampered_copy(python_repository, tmp_path / "tampered")
    candidate = parity.tag_posts(open_repository(tampered), _onnx(tampered), POSTS, 8)
    with pytest.raises(parity.ParityError, match="identical entities"):
        parity.check(reference[8], candidate, TOLERANCE)


def test_a_changed_graph_fails_parity(
    tiny_checkpoint: Path,
    python_repository: Path,
    reference: dict[int, parity.TaggedRun],
    tmp_path: Path,
) -> None:
    """A different model behind the same manifest (another seed) is caught on the emissions."""
    from tests.export.tiny_checkpoint import build_tiny_checkpoint
    from training.checkpoint import load_for_inference
    from training.export.onnx_export import export_onnx

    other = load_for_inference(build_tiny_checkpoint(tmp_path / "other", seed=1))
    onnx_path = export_onnx(other.module, tmp_path / "other.onnx")
    candidate = parity.tag_posts(
        open_repository(python_repository), OnnxBackend(onnx_path, threads=2), POSTS, 8
    )
    report = parity.compare(reference[8], candidate, TOLERANCE)
    assert report.max_abs_diff > 1.0 and report.mismatched_posts


def test_a_shorter_max_length_in_the_manifest_fails_parity(
    python_repository: Path, reference: dict[int, parity.TaggedRun]
) -> None:
    """A repository whose window sizes differ from the checkpoint's (a stale or edited manifest) sends
    the model other requests; parity names that instead of comparing unrelated emissions."""
    from bga_mner.preprocessing import SubwordEncoder

    loaded = open_repository(python_repository)
    shorter = loaded.manifest.max_length - 4
    encoder = SubwordEncoder.from_file(loaded.version_dir / "tokenizer.json", shorter, loaded.manifest.stride)
    edited = LoadedRepository(
        loaded.manifest.model_copy(update={"max_length": shorter}), encoder, loaded.crf, loaded.version_dir
    )
    report = parity.compare(reference[8], parity.tag_posts(edited, _onnx(python_repository), POSTS, 8))
    assert not report.ok and report.max_abs_diff == float("inf")
    assert any("different inputs" in d or "requests" in d for d in report.details)


def test_emissions_of_the_wrong_shape_fail_parity(python_repository: Path) -> None:
    """A model that answers with fewer positions than it was sent is refused by the tagger; parity
    turns that into a ParityError rather than a crash in the middle of an export."""
    onnx = _onnx(python_repository)

    class Truncating:
        def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
            return onnx.infer(inputs)[:, :1]

    with pytest.raises(parity.ParityError, match="rejected"):
        parity.tag_posts(open_repository(python_repository), Truncating(), POSTS, 8)


# --------------------------------------------------------------------------- the real Triton server


@pytest.fixture(scope="module")
def served_model(python_repository: Path, local_stack: LocalStack) -> str:
    """The python-target export loaded once into the session's Triton (module scope: loading costs ~2 s)."""
    return load_model(
        local_stack.triton_grpc,
        local_stack.model_repository,
        python_repository / "bga_mner",
        "bga_mner_parity",
    )


def _triton(local_stack: LocalStack, repository: Path, served: str) -> Iterator[TritonBackend]:
    """The worker's own Triton backend, after its start-up check of the served model against the manifest."""
    manifest = open_repository(repository).manifest.model_copy(update={"model_name": served})
    backend = TritonBackend(TritonSettings(url=local_stack.triton_grpc, model_name=served), manifest)
    try:
        backend.check_model()
        yield backend
    finally:
        backend.close()


@pytest.fixture
def served_backend(
    local_stack: LocalStack, python_repository: Path, served_model: str
) -> Iterator[TritonBackend]:
    yield from _triton(local_stack, python_repository, served_model)


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 8])
def test_python_backend_on_triton(
    served_backend: TritonBackend,
    python_repository: Path,
    reference: dict[int, parity.TaggedRun],
    batch_size: int,
) -> None:
    size = served_backend.batch_limit(batch_size)  # as the worker sizes its sub-batches
    assert size == batch_size
    candidate = parity.tag_posts(open_repository(python_repository), served_backend, POSTS, size)
    report = parity.check(reference[batch_size], candidate, TOLERANCE)
    assert report.max_abs_diff <= TOLERANCE


@pytest.mark.integration
def test_concurrent_requests_batched_by_triton(
    served_backend: TritonBackend, reference: dict[int, parity.TaggedRun]
) -> None:
    """The tagger's one-window requests (batch size 1), sent at once: Triton's dynamic batcher merges
    requests of different sequence lengths, which model.py pads together; no window's emissions may
    change."""
    requests = reference[1].requests
    assert len({r.mask.shape[1] for r in requests}) > 3, "the windows should differ in length"
    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(lambda r: served_backend.infer(r.inputs), requests))
    for got, want in zip(outputs, requests, strict=True):
        assert got.shape == want.emissions.shape
        assert float(np.max(np.abs(got - want.emissions)[want.mask])) <= TOLERANCE


@pytest.mark.integration
def test_a_wrong_label_order_fails_parity_on_triton(
    local_stack: LocalStack,
    python_repository: Path,
    load_triton_model: Callable[..., str],
    reference: dict[int, parity.TaggedRun],
    tmp_path: Path,
) -> None:
    tampered = _tampered_copy(python_repository, tmp_path / "tampered")
    served = load_triton_model(tampered / "bga_mner", "bga_mner_tampered")
    for backend in _triton(local_stack, tampered, served):
        report = parity.compare(reference[8], parity.tag_posts(open_repository(tampered), backend, POSTS, 8))
        assert report.max_abs_diff <= TOLERANCE  # the graph is the same ...
        assert not report.ok and report.mismatched_posts  # ... but the entities are not
