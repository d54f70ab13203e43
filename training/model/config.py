"""Typed configuration of the BGA-MNER model (the trainer's YAML nests it under `model:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bga_mner.errors import MissingExtra
from training.model.offline_encoders import all_minilm_l6_v2


def default_text_encoder() -> str:
    """The offline all-MiniLM-L6-v2 folder (the training extra), else its hub name."""
    try:
        return str(all_minilm_l6_v2())
    except MissingExtra:  # pragma: no cover - the training extra installs it
        return "sentence-transformers/all-MiniLM-L6-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplerConfig(_Strict):
    """Stage-refined context sampler: stage s keeps ceil(ratio_s * kept_{s-1}) tokens / patches."""

    text_keep: list[float] = Field(default_factory=lambda: [0.75, 0.5])
    patch_keep: list[float] = Field(default_factory=lambda: [0.5, 0.5])

    @model_validator(mode="after")
    def _check(self) -> SamplerConfig:
        if len(self.text_keep) != len(self.patch_keep):
            raise ValueError("text_keep and patch_keep need one ratio per stage each (same length)")
        for ratio in (*self.text_keep, *self.patch_keep):
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"keep ratios must be in (0, 1], got {ratio}")
        return self

    @property
    def stages(self) -> int:
        return len(self.text_keep)


class GeneratorConfig(_Strict):
    """Multi-level cross-modal generator: learned queries cross-attending to the other modality."""

    image_queries: int = Field(default=16, ge=1, description="pseudo visual patches generated from text")
    text_queries: int = Field(default=16, ge=1, description="pseudo text tokens generated from image patches")
    layers: int = Field(default=1, ge=1, description="cross-attention decoder layers per direction")
    heads: int = Field(default=4, ge=1)
    ffn_dim: int = Field(default=768, ge=1)
    levels: list[int] = Field(
        default_factory=lambda: [-1, -3],
        description="text-encoder hidden-state indices (0 = embeddings, -1 = last layer) fed to text2image",
    )

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        if not self.levels:
            raise ValueError("generator.levels needs at least one encoder level")
        return self


class LossWeights(_Strict):
    """Weight of every loss term; 0 switches a term off (and skips its computation)."""

    ner: float = Field(default=1.0, ge=0)
    recon_t2i: float = Field(default=1.0, ge=0)
    recon_i2t: float = Field(default=1.0, ge=0)
    cycle: float = Field(default=0.5, ge=0)
    align: float = Field(default=0.1, ge=0)
    align_temperature: float = Field(default=0.07, gt=0)


class ModelConfig(_Strict):
    variant: Literal["bga", "text_crf"] = "bga"
    text_encoder: str = Field(default_factory=default_text_encoder)
    text_layers: int | None = Field(
        default=None,
        ge=1,
        description="keep only the text encoder's first N layers (a cheaper student); None: all of them",
    )
    image_encoder: str = "efficientnet-lite0"
    hidden: int = Field(default=384, ge=8, description="width of sampler, generator and fusion")
    casing_dim: int = Field(default=32, ge=1)
    num_casing_classes: int = Field(
        default=16, ge=2, description="size of the casing vocabulary (0 = padding)"
    )
    dropout: float = Field(default=0.1, ge=0, lt=1)
    fusion_heads: int = Field(default=4, ge=1)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    loss: LossWeights = Field(default_factory=LossWeights)
    freeze_text_encoder: bool = False
    freeze_image_encoder: bool = True

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        for heads in (self.generator.heads, self.fusion_heads):
            if self.hidden % heads:
                raise ValueError(f"hidden={self.hidden} is not divisible by {heads} attention heads")
        return self
