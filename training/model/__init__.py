"""BGA-MNER model: encoders, stage-refined context sampler, multi-level cross-modal generator, fusion, CRF.

Design choices the paper leaves open are written down in docs/model.md.
"""

from __future__ import annotations

from training.model.batch import Batch
from training.model.bga_mner import BGAMNER, ModelOutput, TextOnlyInference
from training.model.config import GeneratorConfig, LossWeights, ModelConfig, SamplerConfig
from training.model.crf import CRF

__all__ = [
    "BGAMNER",
    "CRF",
    "Batch",
    "GeneratorConfig",
    "LossWeights",
    "ModelConfig",
    "ModelOutput",
    "SamplerConfig",
    "TextOnlyInference",
]
