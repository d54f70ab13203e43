"""Open an exported model repository and check it against the Triton server that serves it.

The worker does its own pre- and post-processing around Triton, so it must use exactly the
tokenizer, labels, window sizes and CRF the model was exported with. Everything is read from the
repository (never from worker settings) and cross-checked, and every disagreement is reported
by name before the worker consumes a single post.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bga_mner.decoding.crf import CRFParams
from bga_mner.errors import ConfigurationError
from bga_mner.model_repository.manifest import Manifest, TensorSpec
from bga_mner.model_repository.triton_config import TritonModelConfig, model_file_for_target
from bga_mner.preprocessing.encoder import SubwordEncoder
from bga_mner.preprocessing.words import PRETOKENIZER_ID

__all__ = [
    "TRITON_CONFIG_FILE",
    "LoadedRepository",
    "RepositoryError",
    "RepositoryMismatch",
    "check_against_triton_metadata",
    "open_repository",
    "write_repository_assets",
]

TRITON_CONFIG_FILE = "config.pbtxt"


class RepositoryError(ConfigurationError):
    """The repository is missing something or is inconsistent with itself."""


class RepositoryMismatch(RepositoryError):
    """The manifest and what Triton serves disagree; ``differences`` lists each one."""

    def __init__(self, model_name: str, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(
            f"model {model_name!r}: the manifest and Triton's model metadata disagree:\n"
            + "\n".join(f"  - {d}" for d in differences)
        )


@dataclass(frozen=True)
class LoadedRepository:
    """What the worker needs from one model version, validated."""

    manifest: Manifest
    encoder: SubwordEncoder
    crf: CRFParams
    version_dir: Path


def _versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def open_repository(
    path: Path, model_name: str = "bga_mner", version: int | None = None, *, require_model_file: bool = False
) -> LoadedRepository:
    """Load ``path/model_name/<version>`` (the highest numeric version when ``version`` is None).

    ``require_model_file`` also demands the file Triton loads for the manifest's target (the
    worker usually reads a repository whose weights only Triton needs, e.g. a TensorRT plan
    built later on the GPU node).
    """
    root = Path(path)
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} does not exist or is not a directory")
    model_dir = root / model_name
    if not model_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise RepositoryError(f"no model {model_name!r} in repository {root} (models found: {found})")
    versions = _versions(model_dir)
    if not versions:
        raise RepositoryError(f"model {model_name!r} in {root} has no numeric version directory")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise RepositoryError(f"model {model_name!r} has no version {version} (versions: {versions})")
    version_dir = model_dir / str(version)

    manifest = Manifest.read(version_dir)
    problems = []
    if manifest.model_name != model_name:
        problems.append(
            f"manifest model_name is {manifest.model_name!r} but the model directory is {model_name!r}"
        )
    if manifest.model_version != version:
        problems.append(f"manifest model_version is {manifest.model_version} but the directory is {version}")
    if manifest.preprocessing.pretokenizer != PRETOKENIZER_ID:
        problems.append(
            f"manifest pretokenizer {manifest.preprocessing.pretokenizer!r} is unknown to this version "
            f"of bga-mner (it implements {PRETOKENIZER_ID!r})"
        )
    tokenizer_name = manifest.preprocessing.tokenizer_file
    tokenizer_file = version_dir / tokenizer_name
    if Path(tokenizer_name).name != tokenizer_name or not tokenizer_name.endswith(".json"):
        problems.append(
            f"tokenizer_file must be a .json file name inside {version_dir}, got {tokenizer_name!r}"
        )
    elif not tokenizer_file.is_file():
        problems.append(f"tokenizer file {tokenizer_file} is missing")
    if require_model_file:
        model_file = version_dir / model_file_for_target(manifest.target)
        if not model_file.is_file():
            problems.append(f"model file {model_file} for target {manifest.target!r} is missing")
    if problems:
        raise RepositoryError(
            f"model repository {version_dir} is not usable:\n" + "\n".join(f"  - {p}" for p in problems)
        )

    try:
        encoder = SubwordEncoder.from_file(tokenizer_file, manifest.max_length, manifest.stride)
    except Exception as error:  # a corrupt tokenizer.json raises tokenizers' own Exception type
        raise RepositoryError(f"cannot load tokenizer {tokenizer_file}: {error}") from error
    return LoadedRepository(manifest, encoder, manifest.crf_params(), version_dir)


def _compare(
    kind: str, expected: list[TensorSpec], served: Any, differences: list[str]
) -> dict[str, list[int]]:
    """Compare one side (inputs or outputs); returns the served shapes by name."""
    if not isinstance(served, list):
        differences.append(f"Triton metadata has no {kind} list")
        return {}
    served_by_name: dict[str, Mapping[str, Any]] = {
        str(t.get("name")): t for t in served if isinstance(t, Mapping)
    }
    shapes: dict[str, list[int]] = {}
    singular = kind[:-1]
    for spec in expected:
        tensor = served_by_name.get(spec.name)
        if tensor is None:
            differences.append(f"{singular} {spec.name!r} is in the manifest but not served by Triton")
            continue
        datatype = tensor.get("datatype")
        if datatype != spec.dtype:
            differences.append(
                f"{singular} {spec.name!r}: Triton serves datatype {datatype}, the manifest says {spec.dtype}"
            )
        shape = [int(d) for d in tensor.get("shape", [])]
        shapes[spec.name] = shape
        expected_shape = [-1, *spec.dims]
        if shape != expected_shape:
            differences.append(
                f"{singular} {spec.name!r}: Triton serves shape {shape}, the manifest says {expected_shape} "
                "(batch dimension first)"
            )
    for name in sorted(set(served_by_name) - {s.name for s in expected}):
        differences.append(f"{singular} {name!r} is served by Triton but not in the manifest")
    return shapes


def check_against_triton_metadata(manifest: Manifest, metadata: Mapping[str, Any]) -> None:
    """Raise :class:`RepositoryMismatch` naming every difference between manifest and Triton.

    ``metadata`` is ``get_model_metadata(..., as_json=True)`` of tritonclient (gRPC or HTTP):
    ``{"name", "versions", "platform", "inputs": [{"name", "datatype", "shape"}], "outputs": [...]}``,
    shapes including the batch dimension (-1).
    """
    differences: list[str] = []
    name = metadata.get("name")
    if name is not None and name != manifest.model_name:
        differences.append(f"Triton serves model {name!r}, the manifest is for {manifest.model_name!r}")
    versions = metadata.get("versions")
    if (
        isinstance(versions, list)
        and versions
        and str(manifest.model_version) not in [str(v) for v in versions]
    ):
        differences.append(
            f"Triton serves versions {versions}, not the manifest's version {manifest.model_version}"
        )
    _compare("inputs", manifest.inputs, metadata.get("inputs"), differences)
    output_shapes = _compare("outputs", manifest.outputs, metadata.get("outputs"), differences)
    emissions = output_shapes.get("emissions")
    if emissions and emissions[-1] != -1 and emissions[-1] != len(manifest.labels):
        differences.append(
            f"number of labels: Triton's emissions have {emissions[-1]}, "
            f"the manifest has {len(manifest.labels)} labels {manifest.labels}"
        )
    if differences:
        raise RepositoryMismatch(manifest.model_name, differences)


def write_repository_assets(
    version_dir: Path, manifest: Manifest, tokenizer_json_path: Path, config: TritonModelConfig | None = None
) -> None:
    """Write ``manifest.json`` and the tokenizer into a version directory (export calls this).

    With ``config``, also writes ``config.pbtxt`` one level up, in the model directory. The model
    file itself (``model.onnx``/``model.plan``/``model.py``) is the exporter's job.
    """
    version_dir = Path(version_dir)
    if version_dir.name != str(manifest.model_version):
        raise RepositoryError(
            f"version directory {version_dir} does not match the manifest's "
            f"model_version {manifest.model_version}"
        )
    if version_dir.parent.name != manifest.model_name:
        raise RepositoryError(
            f"model directory {version_dir.parent} does not match the manifest's "
            f"model_name {manifest.model_name!r}"
        )
    if config is not None and config.name != manifest.model_name:
        raise RepositoryError(
            f"config name {config.name!r} does not match model_name {manifest.model_name!r}"
        )
    source = Path(tokenizer_json_path)
    if not source.is_file():
        raise RepositoryError(f"tokenizer file {source} does not exist")
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, version_dir / manifest.preprocessing.tokenizer_file)
    manifest.write(version_dir)
    if config is not None:
        (version_dir.parent / TRITON_CONFIG_FILE).write_text(config.render(), encoding="utf-8")
