from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bga_mner.decoding import decode_words, gather_word_emissions
from bga_mner.model_repository import (
    MANIFEST_FILE,
    TRITON_CONFIG_FILE,
    Manifest,
    ManifestError,
    RepositoryError,
    RepositoryMismatch,
    check_against_triton_metadata,
    config_for_manifest,
    open_repository,
    write_repository_assets,
)
from bga_mner.preprocessing import pad_batch, split_words

MakeManifest = Callable[..., Manifest]


def export(root: Path, manifest: Manifest, tokenizer_json: Path) -> Path:
    version_dir = root / manifest.model_name / str(manifest.model_version)
    write_repository_assets(version_dir, manifest, tokenizer_json, config_for_manifest(manifest))
    return version_dir


def triton_metadata(manifest: Manifest) -> dict[str, Any]:
    """What tritonclient's get_model_metadata(as_json=True) returns for a faithful deployment."""

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.dtype, "shape": [-1, *s.dims]} for s in specs]

    return {
        "name": manifest.model_name,
        "versions": [str(manifest.model_version)],
        "platform": "onnxruntime_onnx",
        "inputs": tensors(manifest.inputs),
        "outputs": tensors(manifest.outputs),
    }


def test_export_then_open_and_decode(
    tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest(max_length=16, stride=4)
    version_dir = export(tmp_path, manifest, tokenizer_json)
    assert sorted(p.name for p in version_dir.iterdir()) == [MANIFEST_FILE, "tokenizer.json"]
    assert (
        (version_dir.parent / TRITON_CONFIG_FILE)
        .read_text()
        .startswith('name: "bga_mner"\nplatform: "onnxruntime_onnx"')
    )

    loaded = open_repository(tmp_path)
    assert loaded.version_dir == version_dir
    assert loaded.manifest == manifest
    assert loaded.encoder.max_length == 16 and loaded.encoder.stride == 4
    np.testing.assert_array_equal(loaded.crf.transitions, manifest.crf_params().transitions)

    # the loaded pieces fit together: a post goes through encoder -> (fake) model -> decoder
    post = "RT @cnn: Barack Obama visited New York today 😀 " * 2
    words = split_words(post)
    windows = loaded.encoder.encode_words([w.text for w in words])
    batch = pad_batch(windows, loaded.encoder.pad_id)
    emissions = np.random.default_rng(0).normal(size=(*batch["input_ids"].shape, len(manifest.labels)))
    entities = decode_words(
        post, words, gather_word_emissions(windows, emissions), manifest.labels, loaded.crf
    )
    assert all(post[e.start : e.end] == e.text for e in entities)


def test_highest_numeric_version_is_chosen(
    tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest
) -> None:
    for version in (1, 2, 10):
        export(tmp_path, make_manifest(model_version=version), tokenizer_json)
    (tmp_path / "bga_mner" / "not-a-version").mkdir()
    assert open_repository(tmp_path).manifest.model_version == 10  # numeric, not "2" > "10"
    assert open_repository(tmp_path, version=2).version_dir.name == "2"
    with pytest.raises(RepositoryError, match=r"no version 3 \(versions: \[1, 2, 10\]\)"):
        open_repository(tmp_path, version=3)


def test_missing_things_are_named(tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        open_repository(tmp_path / "nowhere")
    version_dir = export(tmp_path, make_manifest(), tokenizer_json)
    with pytest.raises(
        RepositoryError, match=r"no model 'other' in repository .* \(models found: \['bga_mner'\]\)"
    ):
        open_repository(tmp_path, model_name="other")
    with pytest.raises(
        RepositoryError, match=r"model file .*model\.onnx for target 'onnxruntime' is missing"
    ):
        open_repository(tmp_path, require_model_file=True)
    (version_dir / "model.onnx").write_bytes(b"onnx")
    assert open_repository(tmp_path, require_model_file=True).version_dir == version_dir
    (version_dir / "tokenizer.json").unlink()
    with pytest.raises(RepositoryError, match=r"tokenizer file .*tokenizer\.json is missing"):
        open_repository(tmp_path)
    (version_dir / MANIFEST_FILE).unlink()
    with pytest.raises(ManifestError, match=f"no {MANIFEST_FILE}"):
        open_repository(tmp_path)
    shutil.rmtree(version_dir)
    with pytest.raises(RepositoryError, match="has no numeric version directory"):
        open_repository(tmp_path)


def test_inconsistent_repository(tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest) -> None:
    version_dir = export(tmp_path, make_manifest(), tokenizer_json)
    data = json.loads((version_dir / MANIFEST_FILE).read_text())
    data["model_name"] = "renamed"
    data["model_version"] = 7
    data["preprocessing"]["pretokenizer"] = "whitespace"
    data["preprocessing"]["tokenizer_file"] = "../../elsewhere.json"
    (version_dir / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(RepositoryError) as error:
        open_repository(tmp_path)
    message = str(error.value)
    for expected in (
        "manifest model_name is 'renamed' but the model directory is 'bga_mner'",
        "manifest model_version is 7 but the directory is 1",
        "pretokenizer 'whitespace' is unknown",
        "tokenizer_file must be a .json file name",
    ):
        assert expected in message


def test_label_count_disagreeing_with_outputs(
    tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest
) -> None:
    version_dir = export(tmp_path, make_manifest(), tokenizer_json)
    data = json.loads((version_dir / MANIFEST_FILE).read_text())
    data["outputs"][0]["dims"] = [-1, 5]
    (version_dir / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"output 'emissions' has dims \[-1, 5\] but there are 9 labels"):
        open_repository(tmp_path)


def test_corrupt_tokenizer(tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest) -> None:
    version_dir = export(tmp_path, make_manifest(), tokenizer_json)
    (version_dir / "tokenizer.json").write_text("{}")
    with pytest.raises(RepositoryError, match="cannot load tokenizer"):
        open_repository(tmp_path)


def test_write_assets_refuses_mismatched_directories(
    tmp_path: Path, tokenizer_json: Path, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest()
    with pytest.raises(RepositoryError, match="does not match the manifest's model_version 1"):
        write_repository_assets(tmp_path / "bga_mner" / "2", manifest, tokenizer_json)
    with pytest.raises(RepositoryError, match="does not match the manifest's model_name 'bga_mner'"):
        write_repository_assets(tmp_path / "other" / "1", manifest, tokenizer_json)
    with pytest.raises(RepositoryError, match="does not exist"):
        write_repository_assets(tmp_path / "bga_mner" / "1", manifest, tmp_path / "missing.json")


def test_matching_triton_metadata_passes(make_manifest: MakeManifest) -> None:
    manifest = make_manifest()
    check_against_triton_metadata(manifest, triton_metadata(manifest))


def test_every_metadata_difference_is_named(make_manifest: MakeManifest) -> None:
    manifest = make_manifest()
    metadata = triton_metadata(manifest)
    metadata["versions"] = ["2"]
    metadata["inputs"][0]["datatype"] = "INT32"  # input_ids
    metadata["inputs"][1]["shape"] = [-1, 128]  # attention_mask
    del metadata["inputs"][2]  # casing_ids
    metadata["inputs"].append({"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 224, 224]})
    metadata["outputs"][0]["shape"] = [-1, -1, 13]
    with pytest.raises(RepositoryMismatch) as error:
        check_against_triton_metadata(manifest, metadata)
    assert error.value.differences == [
        "Triton serves versions ['2'], not the manifest's version 1",
        "input 'input_ids': Triton serves datatype INT32, the manifest says INT64",
        "input 'attention_mask': Triton serves shape [-1, 128], the manifest says [-1, -1] "
        "(batch dimension first)",
        "input 'casing_ids' is in the manifest but not served by Triton",
        "input 'pixel_values' is served by Triton but not in the manifest",
        "output 'emissions': Triton serves shape [-1, -1, 13], the manifest says [-1, -1, 9] "
        "(batch dimension first)",
        "number of labels: Triton's emissions have 13, the manifest has 9 labels "
        "['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG', 'B-MISC', 'I-MISC']",
    ]
    assert "model 'bga_mner': the manifest and Triton's model metadata disagree" in str(error.value)


def test_wrong_model_name_in_metadata(make_manifest: MakeManifest) -> None:
    manifest = make_manifest()
    with pytest.raises(RepositoryMismatch, match="Triton serves model 'other'"):
        check_against_triton_metadata(manifest, {**triton_metadata(manifest), "name": "other"})
    with pytest.raises(RepositoryMismatch, match="Triton metadata has no inputs list"):
        check_against_triton_metadata(manifest, {"outputs": triton_metadata(manifest)["outputs"]})
