"""The model-repository contract against a real Triton server (the local stack on 127.0.0.1).

The rendered config.pbtxt must load in Triton (also with dynamic batching and warm-up), and
``check_against_triton_metadata`` must accept exactly what Triton then reports and name what
differs. Needs the local stack: a stack that cannot start makes these tests error, not skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bga_mner.decoding import decode_words, gather_word_emissions
from bga_mner.model_repository import (
    TRITON_CONFIG_FILE,
    Manifest,
    RepositoryMismatch,
    check_against_triton_metadata,
    config_for_manifest,
    open_repository,
)
from bga_mner.preprocessing import pad_batch, split_words

pytestmark = pytest.mark.integration

LoadModel = Callable[..., str]


def grpc_metadata(url: str, name: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        metadata: dict[str, Any] = client.get_model_metadata(name, as_json=True)
        return metadata
    finally:
        client.close()


def http_metadata(url: str, name: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=url)
    try:
        metadata: dict[str, Any] = client.get_model_metadata(name)
        return metadata
    finally:
        client.close()


def test_manifest_matches_what_triton_serves(
    tiny_model_repository: Path, load_triton_model: LoadModel, local_stack: Any
) -> None:
    loaded = open_repository(tiny_model_repository)
    served = load_triton_model(tiny_model_repository / loaded.manifest.model_name)
    manifest = loaded.manifest.model_copy(update={"model_name": served})  # served under a free name
    for metadata in (
        grpc_metadata(local_stack.triton_grpc, served),
        http_metadata(local_stack.triton_http, served),
    ):
        check_against_triton_metadata(manifest, metadata)

    # a manifest for another label set is refused, and the message says why
    data = manifest.model_dump(mode="json")
    data.update(
        labels=data["labels"][:5],
        outputs=[{"name": "emissions", "dtype": "FP32", "dims": [-1, 5]}],
        crf={"start": [0.0] * 5, "end": [0.0] * 5, "transitions": [[0.0] * 5] * 5},
    )
    five_labels = Manifest.model_validate(data)
    with pytest.raises(RepositoryMismatch) as error:
        check_against_triton_metadata(five_labels, grpc_metadata(local_stack.triton_grpc, served))
    assert any(d.startswith("number of labels: Triton's emissions have 9") for d in error.value.differences)

    # and the pieces work together through the real server: encode -> Triton -> decode
    import tritonclient.grpc as grpcclient

    post = "RT @cnn: Barack Obama visited NEW YORK today #travel " * 8
    words = split_words(post)
    windows = loaded.encoder.encode_words([w.text for w in words])
    assert len(windows) > 1  # max_length 64: the post needs several windows
    batch = pad_batch(windows, loaded.encoder.pad_id)
    inputs = []
    for name, array in batch.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    try:
        result = client.infer(served, inputs, outputs=[grpcclient.InferRequestedOutput("emissions")])
    finally:
        client.close()
    emissions = result.as_numpy("emissions")
    assert emissions.shape == (*batch["input_ids"].shape, len(manifest.labels))
    entities = decode_words(
        post, words, gather_word_emissions(windows, emissions), manifest.labels, loaded.crf
    )
    assert entities, "the tiny model tags Title-case and UPPER words"
    assert all(post[e.start : e.end] == e.text for e in entities)
    assert {e.type for e in entities} >= {"ORG", "MISC"}


def test_config_with_dynamic_batching_and_warmup_loads(
    tiny_model_repository: Path, load_triton_model: LoadModel, tmp_path: Path, local_stack: Any
) -> None:
    source = tiny_model_repository / "bga_mner"
    copy = tmp_path / "bga_mner"
    shutil.copytree(source, copy, symlinks=True)
    manifest = open_repository(tiny_model_repository).manifest
    config = config_for_manifest(
        manifest,
        max_batch_size=8,
        kind="KIND_CPU",
        preferred_batch_size=(4, 8),
        max_queue_delay_microseconds=1000,
        parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/python_env", "INTRA_OP_THREADS": "1"},
        warmup_length=16,
    )
    (copy / TRITON_CONFIG_FILE).write_text(config.render())
    served = load_triton_model(copy)
    check_against_triton_metadata(
        manifest.model_copy(update={"model_name": served}), grpc_metadata(local_stack.triton_grpc, served)
    )
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    try:
        served_config = client.get_model_config(served, as_json=True)["config"]
    finally:
        client.close()
    assert served_config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert served_config["model_warmup"][0]["batch_size"] == 8
    assert np.array(served_config["model_warmup"][0]["inputs"]["input_ids"]["dims"], dtype=int).tolist() == [
        16
    ]
