"""First end-to-end smoke test through the real local stack (Kafka-protocol broker, Triton, Redis).

A tiny randomly initialised BERT token classifier is exported to ONNX and served by Triton through
model_repo/python_backend/model.py; posts go through a 3-partition topic and a consumer group,
are inferred over gRPC, checked against the same ONNX file run in-process, stored in Redis, and
the group's offsets must reach the end of every partition. The full worker is tested elsewhere:
this proves the stack, the fixtures and the python-backend model. Any unreachable service makes
these tests fail (the fixtures raise), never skip.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND_MODEL = REPO_ROOT / "model_repo" / "python_backend" / "model.py"
NUM_LABELS = 5
VOCAB = 128
MAX_BATCH = 32
POSTS = 60

# allow_ragged_batch lets the dynamic batcher group requests whose sequence lengths differ (each
# client batch is padded to its own longest post); without it Triton only groups equal shapes.
# model.py pads the group to a common length and cuts every response back.
CONFIG_PBTXT = f"""\
name: "smoke_tagger"
backend: "python"
max_batch_size: {MAX_BATCH}
input [
  {{ name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true }},
  {{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true }}
]
output [
  {{ name: "emissions" data_type: TYPE_FP32 dims: [ -1, {NUM_LABELS} ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 50000 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "$$TRITON_MODEL_DIRECTORY/python_env" }} }}
parameters: {{ key: "INTRA_OP_THREADS" value: {{ string_value: "1" }} }}
"""

Array = npt.NDArray[Any]


def encode(text: str) -> list[int]:
    """A stand-in tokenizer (the real preprocessing is the worker's): stable word ids, [CLS]=1, [SEP]=2."""
    return [1, *(zlib.crc32(word.encode()) % (VOCAB - 10) + 10 for word in text.split()), 2]


def pad(sequences: list[list[int]]) -> dict[str, Array]:
    longest = max(len(s) for s in sequences)
    ids = np.zeros((len(sequences), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def smoke_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton model directory: config.pbtxt, 1/model.onnx, 1/model.py and the python environment link."""
    # Imported here, not skipped when missing: the test venv always has them, and a smoke test
    # that silently skips proves nothing. (The worker never imports torch; tests may.)
    torch: Any = importlib.import_module("torch")
    transformers: Any = importlib.import_module("transformers")

    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=NUM_LABELS,
        attn_implementation="eager",
    )
    bert = transformers.BertForTokenClassification(config).eval()

    class Emissions(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits

    model_dir = tmp_path_factory.mktemp("models") / "smoke_tagger"
    version = model_dir / "1"
    version.mkdir(parents=True)
    example = pad([encode("hello world"), encode("a b c")])
    torch.onnx.export(
        Emissions().eval(),
        (torch.from_numpy(example["input_ids"]), torch.from_numpy(example["attention_mask"])),
        str(version / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["emissions"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "emissions": {0: "batch", 1: "seq"},
        },
        opset_version=17,
        dynamo=False,
    )
    shutil.copy(BACKEND_MODEL, version / "model.py")
    (model_dir / "config.pbtxt").write_text(CONFIG_PBTXT, encoding="utf-8")
    # EXECUTION_ENV_PATH: the python backend runs the model in this (numpy<2) environment.
    (model_dir / "python_env").symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    return model_dir


@pytest.fixture(scope="module")
def reference(smoke_model_dir: Path) -> Callable[[dict[str, Array]], Array]:
    """The same ONNX file run in-process: what Triton's answers must equal."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(smoke_model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    def run(feeds: dict[str, Array]) -> Array:
        return np.asarray(session.run(["emissions"], feeds)[0])

    return run


def triton_infer(client: Any, model: str, feeds: dict[str, Array]) -> Array:
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput("emissions")])
    return np.asarray(result.as_numpy("emissions"))


def make_posts(count: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(7)
    words = ["Obama", "visits", "Paris", "with", "@nasa", "#WorldCup", "great", "game", "tonight", "in"]
    words += ["New", "York", "London", "Apple", "🙂", "https://t.co/x"]
    return [
        {"id": f"post-{i}", "text": " ".join(rng.choice(words, size=int(rng.integers(1, 20))))}
        for i in range(count)
    ]


def test_posts_flow_from_kafka_through_triton_to_redis(
    local_stack: Any,
    load_triton_model: Callable[..., str],
    new_topic: Callable[..., str],
    kafka_consumer_config: dict[str, Any],
    smoke_model_dir: Path,
    reference: Callable[[dict[str, Array]], Array],
) -> None:
    import redis
    import tritonclient.grpc as grpcclient
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    model = load_triton_model(smoke_model_dir)
    topic = new_topic(partitions=3)
    posts = make_posts(POSTS)

    producer = KafkaProducer(
        bootstrap_servers=local_stack.kafka_bootstrap,
        key_serializer=str.encode,
        value_serializer=lambda value: json.dumps(value).encode(),
        acks="all",
    )
    acks = [producer.send(topic, key=post["id"], value=post) for post in posts]
    producer.flush(timeout=30)
    producer.close()
    # The end of each partition, from the broker's acks. (Tansu 0.6's ListOffsets reports the last
    # record *batch*'s base offset + 1 as the high watermark, so consumer.end_offsets is not usable.)
    ends: dict[int, int] = {}
    for ack in acks:
        metadata = ack.get(timeout=30)
        ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)

    consumer = KafkaConsumer(topic, max_poll_records=16, **kafka_consumer_config)
    triton = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    store = redis.Redis.from_url(local_stack.redis_url, decode_responses=True)
    key_prefix = f"smoke:{topic}:"
    seen: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 90
    try:
        while len(seen) < POSTS:
            assert time.monotonic() < deadline, f"consumed {len(seen)} of {POSTS} posts before the deadline"
            polled = consumer.poll(timeout_ms=500)
            messages = [message for batch in polled.values() for message in batch]
            if not messages:
                continue
            for start in range(0, len(messages), MAX_BATCH):
                chunk = [json.loads(m.value) for m in messages[start : start + MAX_BATCH]]
                sequences = [encode(post["text"]) for post in chunk]
                feeds = pad(sequences)
                served = triton_infer(triton, model, feeds)
                expected = reference(feeds)
                assert served.shape == expected.shape == (len(chunk), feeds["input_ids"].shape[1], NUM_LABELS)
                assert served.dtype == np.float32
                np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
                with store.pipeline() as pipe:
                    for post, sequence, emissions in zip(chunk, sequences, served, strict=True):
                        labels = emissions[: len(sequence)].argmax(axis=-1).tolist()
                        pipe.set(
                            key_prefix + post["id"], json.dumps({"text": post["text"], "labels": labels})
                        )
                        seen[post["id"]] = post
                    pipe.execute()
            consumer.commit()  # only after the results are stored: at-least-once

        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert len(partitions) == 3
        committed = {tp.partition: consumer.committed(tp) for tp in partitions}
        assert committed == ends, f"committed offsets {committed} do not reach the partitions' ends {ends}"
        assert sum(ends.values()) == POSTS
        assert len(ends) >= 2, "keys should spread over partitions"
    finally:
        consumer.close()
        triton.close()

    try:
        keys = sorted(store.scan_iter(match=key_prefix + "*"))
        assert len(keys) == POSTS
        for post in posts:
            stored = json.loads(store.get(key_prefix + post["id"]) or "null")
            assert stored["text"] == post["text"]
            assert len(stored["labels"]) == len(encode(post["text"]))
            assert all(0 <= label < NUM_LABELS for label in stored["labels"])
    finally:
        store.close()


def test_triton_batches_concurrent_requests_of_different_lengths(
    local_stack: Any,
    load_triton_model: Callable[..., str],
    smoke_model_dir: Path,
    reference: Callable[[dict[str, Array]], Array],
) -> None:
    """Requests of different lengths, merged by the dynamic batcher, come back cut to their own length."""
    import tritonclient.grpc as grpcclient

    model = load_triton_model(smoke_model_dir, name="smoke_tagger_batching")
    posts = make_posts(12)
    requests = [pad([encode(p["text"]) for p in posts[i : i + 2]]) for i in range(0, 12, 2)]
    assert len({r["input_ids"].shape[1] for r in requests}) > 1, "the test needs different lengths"

    client = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    results: dict[int, Array] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(requests))

    def send(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = triton_infer(client, model, requests[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        for index, feeds in enumerate(requests):
            np.testing.assert_allclose(results[index], reference(feeds), rtol=1e-5, atol=1e-5)
        # Triton updates its statistics just after it answers, and JSON leaves out zero counters:
        # poll briefly instead of reading once.
        expected = sum(len(r["input_ids"]) for r in requests)
        deadline = time.monotonic() + 10
        while True:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
            if int(stats.get("inference_count", 0)) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert int(stats.get("inference_count", 0)) == expected, stats
        batched = int(stats.get("execution_count", 0)) < len(requests)
        assert batched, f"requests were not batched together: {stats}"
    finally:
        client.close()


def test_a_model_whose_config_and_onnx_disagree_is_refused_with_the_reason(
    local_stack: Any, load_triton_model: Callable[..., str], smoke_model_dir: Path, tmp_path: Path
) -> None:
    from bga_mner.stack.service import StackError

    broken = tmp_path / "smoke_tagger_broken"
    shutil.copytree(smoke_model_dir, broken, symlinks=True)
    config = broken / "config.pbtxt"
    extra_input = '  { name: "casing_ids" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true },\n'
    config.write_text(config.read_text().replace("input [\n", "input [\n" + extra_input))
    with pytest.raises(StackError, match=r"inputs not in the ONNX graph \['casing_ids'\]"):
        load_triton_model(broken)
