from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from bga_mner.model_repository import MANIFEST_FILE, Manifest, ManifestError

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
MakeManifest = Callable[..., Manifest]
ManifestData = Callable[..., dict[str, Any]]


def test_round_trip_through_manifest_json(tmp_path: Path, make_manifest: MakeManifest) -> None:
    manifest = make_manifest()
    path = manifest.write(tmp_path / "bga_mner" / "1")
    assert path.name == MANIFEST_FILE
    again = Manifest.read(path.parent)
    assert again == manifest
    np.testing.assert_array_equal(again.crf_params().transitions, manifest.crf_params().transitions)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2
    assert data["outputs"] == [{"name": "emissions", "dtype": "FP32", "dims": [-1, len(LABELS)]}]
    assert data["preprocessing"] == {
        "tokenizer_file": "tokenizer.json",
        "pretokenizer": "bga-mner-tweet-v1",
        "casing_features": True,
    }


def test_image_aware_manifest(make_manifest: MakeManifest) -> None:
    manifest = make_manifest(image_aware=True, image={"size": 224, "mean": [0.5] * 3, "std": [0.25] * 3})
    assert manifest.image is not None and manifest.image.size == 224


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ["B-PER", "O", *LABELS[2:]]}, 'first label must be "O"'),
        ({"labels": [*LABELS[:-1], "MISC"]}, "bad: ['MISC']"),
        ({"labels": LABELS[:-1]}, "crf has 9 labels but labels has 8"),
        (
            {"outputs": [{"name": "emissions", "dtype": "FP32", "dims": [-1, 5]}]},
            "output 'emissions' has dims [-1, 5] but there are 9 labels",
        ),
        (
            {"outputs": [{"name": "logits", "dtype": "FP32", "dims": [-1, 9]}]},
            "outputs must include 'emissions'",
        ),
        ({"image_aware": True}, "image_aware is true but no image spec"),
        ({"stride": 126}, "stride 126 must be smaller than max_length - 2 = 126"),
        ({"schema_version": 3}, "schema_version"),
        ({"sequence_buckets": [16, 8, 128]}, "sequence_buckets"),
        ({"sequence_buckets": [8, 64]}, "end at max_length"),
        ({"target": "tensorflow"}, "target"),
        ({"surprise": 1}, "surprise"),
        ({"inputs": [{"name": "input_ids", "dtype": "INT65", "dims": [-1]}]}, "inputs.0.dtype"),
        ({"inputs": [{"name": "input_ids", "dtype": "INT64", "dims": [0]}]}, "dims must be positive or -1"),
    ],
)
def test_invalid_manifests_name_what_is_wrong(
    changes: dict[str, Any],
    message: str,
    tmp_path: Path,
    make_manifest: MakeManifest,
    manifest_data: ManifestData,
) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_manifest(**changes)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest_data(**changes)))
    with pytest.raises(ManifestError, match=f"{MANIFEST_FILE} is invalid"):
        Manifest.read(tmp_path)


def test_card_fields_are_checked(manifest_data: ManifestData) -> None:
    data = manifest_data()
    data["card"]["training_data_sha256"] = "not-a-hash"
    data["card"]["dev_f1"] = 7100.0  # F1 is a percentage: 0 to 100
    with pytest.raises(ValidationError) as error:
        Manifest.model_validate(data)
    fields = {".".join(str(p) for p in e["loc"]) for e in error.value.errors()}
    assert fields == {"card.training_data_sha256", "card.dev_f1"}


def test_schema_1_is_read_with_its_f1_fractions_as_percent(manifest_data: ManifestData) -> None:
    data = manifest_data()
    data["schema_version"] = 1
    data["card"]["dev_f1"], data["card"]["test_f1"] = 0.71, 0.7
    manifest = Manifest.model_validate(data)
    assert manifest.schema_version == 2
    assert manifest.card.dev_f1 == pytest.approx(71.0) and manifest.card.test_f1 == pytest.approx(70.0)


def test_crf_of_wrong_shape(manifest_data: ManifestData) -> None:
    data = manifest_data()
    data["crf"]["transitions"] = data["crf"]["transitions"][:-1]
    with pytest.raises(ValidationError, match=r"transitions \(8, 9\)"):
        Manifest.model_validate(data)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=f"no {MANIFEST_FILE} in"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        Manifest.read(tmp_path)
