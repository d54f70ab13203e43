"""The streaming worker's model: Triton Inference Server over gRPC.

Start-up refuses a server whose model disagrees with the model repository the worker was given
(a wrong export behind the right name would otherwise tag garbage silently). At run time every
request has a deadline, transient failures are retried with exponential backoff and jitter, and
a circuit breaker turns a dead server into an immediate ``InferenceUnavailable`` so the loop
stops committing and backs off instead of hammering it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import tenacity
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from bga_mner.inference import InferenceRejected, InferenceUnavailable
from bga_mner.model_repository import RepositoryMismatch, check_against_triton_metadata
from worker.errors import StartupError
from worker.inference.circuit import CircuitBreaker, CircuitOpen, CircuitState

if TYPE_CHECKING:
    from bga_mner.model_repository import Manifest
    from worker.observability.metrics import WorkerMetrics
    from worker.settings import TritonSettings

log = logging.getLogger(__name__)

# gRPC status codes that describe the request, not the server's health: retrying cannot help.
_PERMANENT_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED"})


_PROBE_TIMEOUT_S = 2.0


def channel_args(settings: TritonSettings) -> list[tuple[str, Any]]:
    """tritonclient's default gRPC channel options, the load-balancing policy and a short reconnect backoff.

    One gRPC channel to a ClusterIP Service sticks to one Triton pod for its whole life; with
    ``round_robin`` and a ``dns:///<headless service>:8001`` URL the channel connects to every pod the
    name resolves to and spreads requests over them (docs/operations.md).
    """
    keepalive = grpcclient.KeepAliveOptions()
    unlimited = 2**31 - 1  # tritonclient's own default message limits
    return [
        ("grpc.max_send_message_length", unlimited),
        ("grpc.max_receive_message_length", unlimited),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.lb_policy_name", settings.load_balancing),
        # gRPC backs off reconnecting up to 120 s by default: after a Triton outage of a few seconds the
        # worker would sit idle long after Triton is back. Triton is in-cluster: retry connecting often.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


class _Transient(Exception):
    """An attempt failed in a way another attempt might not."""


def _metadata_with_int_dims(metadata: dict[str, Any]) -> dict[str, Any]:
    """gRPC's JSON metadata carries int64 dims as strings; the manifest check compares integers."""
    fixed = dict(metadata)
    for key in ("inputs", "outputs"):
        fixed[key] = [
            {**tensor, "shape": [int(d) for d in tensor.get("shape", [])]} for tensor in metadata.get(key, [])
        ]
    return fixed


class TritonBackend:
    """``InferenceBackend`` over ``tritonclient.grpc``; call ``check_model()`` once before serving."""

    def __init__(
        self,
        settings: TritonSettings,
        manifest: Manifest,
        metrics: WorkerMetrics | None = None,
        *,
        circuit: CircuitBreaker | None = None,
        output_name: str = "emissions",
    ) -> None:
        """``circuit`` and ``output_name`` are test knobs; everything an operator sets is in ``settings``."""
        self._settings = options = settings
        self._output_name = output_name
        self._manifest = manifest
        self._metrics = metrics
        # Every request names the version the tokenizer, labels and CRF were read from: with "" Triton
        # would pick by its own version policy, and a newer version loaded beside it would silently be
        # decoded with the old version's labels.
        self._version = options.model_version or str(manifest.model_version)
        self.max_batch_size: int | None = None  # Triton's limit, known after check_model()
        self.circuit = circuit or CircuitBreaker(options.circuit_failure_threshold, options.circuit_reset_s)
        if metrics is not None:
            metrics.circuit_open.set_function(lambda: float(self.circuit.state is CircuitState.OPEN))
        self._client = grpcclient.InferenceServerClient(
            url=options.url,
            channel_args=channel_args(options),
            ssl=options.ssl,
            root_certificates=str(options.root_certificates) if options.root_certificates else None,
            private_key=str(options.private_key) if options.private_key else None,
            certificate_chain=str(options.certificate_chain) if options.certificate_chain else None,
        )
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(options.retries + 1),
            # initial * 2^n capped at max, plus up to `jitter` random seconds so that workers that
            # failed together do not retry in lock-step.
            wait=tenacity.wait_exponential(multiplier=options.backoff_initial_s, max=options.backoff_max_s)
            + tenacity.wait_random(0, options.backoff_jitter_s),
            retry=tenacity.retry_if_exception_type(_Transient),
            reraise=True,
        )

    def check_model(self) -> None:
        """Wait for the model to be ready, compare Triton's metadata with the manifest, read its batch limit.

        Raises ``StartupError`` naming the difference.
        """
        opts = self._settings
        if opts.model_version and opts.model_version != str(self._manifest.model_version):
            raise StartupError(
                f"Triton model version {opts.model_version} was asked for, but the model repository's "
                f"manifest is version {self._manifest.model_version}"
            )
        deadline = time.monotonic() + opts.startup_timeout_s
        last_error = "not ready"
        while True:
            try:
                if self._client.is_model_ready(opts.model_name, self._version, client_timeout=opts.timeout_s):
                    break
                last_error = "not ready"
            except InferenceServerException as exc:
                last_error = f"{exc.status()}: {exc.message()}"
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"model {opts.model_name!r} version {self._version} "
                    f"on Triton at {opts.url} "
                    f"is not ready after {opts.startup_timeout_s:.0f} s: {last_error}"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        try:
            metadata = self._client.get_model_metadata(
                opts.model_name, self._version, as_json=True, client_timeout=opts.timeout_s
            )
            config = self._client.get_model_config(
                opts.model_name, self._version, as_json=True, client_timeout=opts.timeout_s
            )
        except InferenceServerException as exc:
            raise StartupError(f"cannot read model metadata from {opts.url}: {exc.message()}") from exc
        try:
            check_against_triton_metadata(self._manifest, _metadata_with_int_dims(metadata))
        except RepositoryMismatch as exc:
            raise StartupError(
                f"model {opts.model_name!r} on Triton at {opts.url} "
                f"does not match the model repository: {exc}"
            ) from exc
        max_batch_size = int(config.get("config", {}).get("max_batch_size", 0))
        if max_batch_size < 1:
            raise StartupError(
                f"model {opts.model_name!r} on Triton at {opts.url} has max_batch_size {max_batch_size}: "
                "the worker sends batches, so the model must be exported with batching"
            )
        self.max_batch_size = max_batch_size
        log.info(
            "triton model ready and matches the manifest",
            extra={
                "fields": {
                    "url": opts.url,
                    "model": opts.model_name,
                    "version": self._version,
                    "max_batch_size": max_batch_size,
                }
            },
        )

    def batch_limit(self, requested: int) -> int:
        """The largest sub-batch to send: ``requested`` capped at Triton's ``max_batch_size``.

        Triton refuses a larger request with INVALID_ARGUMENT, which the loop rightly treats as fatal;
        capping here turns a too-large ``BGA_BATCHING__MAX_BATCH_SIZE`` into smaller requests instead
        of a crash loop. Call after ``check_model()``.
        """
        if self.max_batch_size is None:
            raise RuntimeError("batch_limit() needs check_model() first")
        if requested <= self.max_batch_size:
            return requested
        log.warning(
            "batch size capped at the model's max_batch_size",
            extra={
                "fields": {
                    "requested": requested,
                    "max_batch_size": self.max_batch_size,
                    "model": self._settings.model_name,
                }
            },
        )
        return self.max_batch_size

    def is_ready(self) -> bool:
        """For /readyz: the circuit is closed and Triton says the model is ready.

        A short deadline: a probe that hangs is worse than one that says "not ready".
        """
        if self.circuit.state is CircuitState.OPEN:
            return False
        try:
            return bool(
                self._client.is_model_ready(
                    self._settings.model_name,
                    self._version,
                    client_timeout=min(self._settings.timeout_s, _PROBE_TIMEOUT_S),
                )
            )
        except InferenceServerException:
            return False

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        try:
            return self._retrying(self._attempt, inputs)
        except _Transient as exc:
            raise InferenceUnavailable(str(exc)) from exc
        except CircuitOpen as exc:
            raise InferenceUnavailable(f"Triton at {self._settings.url}: {exc}") from exc

    def close(self) -> None:
        self._client.close()

    def _attempt(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        self.circuit.before_call()
        request = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            request.append(tensor)
        started = time.perf_counter()
        try:
            result = self._client.infer(
                self._settings.model_name,
                request,
                model_version=self._version,
                outputs=[grpcclient.InferRequestedOutput(self._output_name)],
                client_timeout=self._settings.timeout_s,
            )
        except InferenceServerException as exc:
            if self._metrics is not None:
                self._metrics.errors.labels(stage="inference").inc()
            if exc.status() in _PERMANENT_STATUSES:
                # The server is healthy; the request is wrong. Do not trip the breaker for it.
                self.circuit.record_success()
                raise InferenceRejected(f"Triton rejected the request: {exc.message()}") from exc
            self.circuit.record_failure()
            log.warning(
                "triton request failed",
                extra={"fields": {"url": self._settings.url, "status": exc.status(), "error": exc.message()}},
            )
            raise _Transient(f"Triton at {self._settings.url}: {exc.status()}: {exc.message()}") from exc
        self.circuit.record_success()
        if self._metrics is not None:
            self._metrics.triton_latency_seconds.observe(time.perf_counter() - started)
        emissions = result.as_numpy(self._output_name)
        if emissions is None:
            raise InferenceRejected(f"Triton returned no {self._output_name!r} output")
        return np.asarray(emissions, dtype=np.float32)
