"""Triton alone: the requests the worker would send for the posts, by a plain gRPC client.

The requests are made by the worker's own ``Tagger`` (micro-batches of ``batch_size`` posts in
arrival order, windows length-sorted and cut into sub-batches, padded as the manifest asks) behind a
backend that only records them; they are then sent with ``tritonclient.grpc`` from ``concurrency``
threads, each taking the next micro-batch and sending its sub-batches one after another, as the
worker's batch executor does with ``max_in_flight_batches`` threads. What this measures is what
Triton (and the python backend's ONNX Runtime) can do with the worker's traffic and nothing else:
no Kafka, no tokenisation, no decoding, no Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bga_mner.model_repository import open_repository
from bga_mner.posts import Post
from bga_mner.tagging import Tagger

Request = dict[str, npt.NDArray[Any]]


class _Recorder:
    """An ``InferenceBackend`` that keeps the request and answers zeros of the right shape."""

    def __init__(self, labels: int) -> None:
        self.labels = labels
        self.requests: list[Request] = []

    def infer(self, inputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        self.requests.append({name: np.ascontiguousarray(a) for name, a in inputs.items()})
        batch, length = inputs["input_ids"].shape
        return np.zeros((batch, length, self.labels), dtype=np.float32)


def worker_requests(
    repository: Path, model_name: str, posts: Sequence[dict[str, str]], batch_size: int, request_size: int
) -> list[list[Request]]:
    """Per micro-batch of ``batch_size`` posts, the requests (``request_size`` windows each) the worker's
    tagger sends for it."""
    loaded = open_repository(repository, model_name)
    recorder = _Recorder(len(loaded.manifest.labels))
    tagger = Tagger(loaded, recorder, max_batch_size=request_size)
    batches: list[list[Request]] = []
    for start in range(0, len(posts), batch_size):
        chunk = [Post(id=p["id"], text=p["text"]) for p in posts[start : start + batch_size]]
        before = len(recorder.requests)
        tagger.tag_with_errors(chunk)
        batches.append(recorder.requests[before:])
    return batches


@dataclass
class ClientRun:
    wall_s: float
    client_cpu_s: float
    request_latencies_s: list[float] = field(default_factory=list)
    batch_latencies_s: list[float] = field(default_factory=list)
    tokens: int = 0
    real_tokens: int = 0


def send(
    url: str, model_name: str, batches: list[list[Request]], concurrency: int, per_batch: int = 1
) -> ClientRun:
    """Send every micro-batch's requests from ``concurrency`` threads, ``per_batch`` requests of a batch at
    once (the worker's in-flight batches and concurrent requests); latencies per request and batch."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    lock = threading.Lock()
    queue = list(reversed(batches))
    run = ClientRun(0.0, 0.0)
    errors: list[BaseException] = []

    def one_request(client: Any, request: Request) -> None:
        tensors = []
        for name, array in request.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        began = time.perf_counter()
        client.infer(model_name, tensors, outputs=[grpcclient.InferRequestedOutput("emissions")])
        elapsed = time.perf_counter() - began
        with lock:
            run.request_latencies_s.append(elapsed)
            run.tokens += int(request["input_ids"].size)
            run.real_tokens += int(request["attention_mask"].sum())

    def one_thread() -> None:
        client = grpcclient.InferenceServerClient(url)
        pool = ThreadPoolExecutor(max_workers=per_batch)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    requests = queue.pop()
                batch_began = time.perf_counter()
                list(pool.map(lambda request: one_request(client, request), requests))
                with lock:
                    run.batch_latencies_s.append(time.perf_counter() - batch_began)
        except BaseException as error:  # surfaced after the join
            errors.append(error)
        finally:
            pool.shutdown()
            client.close()

    threads = [threading.Thread(target=one_thread, name=f"client-{i}") for i in range(concurrency)]
    cpu_began, began = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.wall_s = time.perf_counter() - began
    run.client_cpu_s = time.process_time() - cpu_began
    if errors:
        raise RuntimeError(f"Triton client failed: {errors[0]!r}") from errors[0]
    return run
