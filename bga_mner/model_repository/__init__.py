"""The model-repository contract between training (export) and serving (see docs/contract.md)."""

from __future__ import annotations

from bga_mner.model_repository.manifest import (
    MANIFEST_FILE,
    CRFSpec,
    ImageSpec,
    Manifest,
    ManifestError,
    ModelCard,
    PreprocessingSpec,
    TensorSpec,
    standard_inputs,
    standard_outputs,
)
from bga_mner.model_repository.repository import (
    TRITON_CONFIG_FILE,
    LoadedRepository,
    RepositoryError,
    RepositoryMismatch,
    check_against_triton_metadata,
    open_repository,
    write_repository_assets,
)
from bga_mner.model_repository.triton_config import (
    DynamicBatching,
    InstanceGroup,
    ModelWarmup,
    TensorConfig,
    TritonModelConfig,
    VersionPolicy,
    WarmupInput,
    config_for_manifest,
    model_file_for_target,
)

__all__ = [
    "MANIFEST_FILE",
    "TRITON_CONFIG_FILE",
    "CRFSpec",
    "DynamicBatching",
    "ImageSpec",
    "InstanceGroup",
    "LoadedRepository",
    "Manifest",
    "ManifestError",
    "ModelCard",
    "ModelWarmup",
    "PreprocessingSpec",
    "RepositoryError",
    "RepositoryMismatch",
    "TensorConfig",
    "TensorSpec",
    "TritonModelConfig",
    "VersionPolicy",
    "WarmupInput",
    "check_against_triton_metadata",
    "config_for_manifest",
    "model_file_for_target",
    "open_repository",
    "standard_inputs",
    "standard_outputs",
    "write_repository_assets",
]
