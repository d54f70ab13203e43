"""Tweet images by IMGID, decoded and tensorised exactly as serving does, missing or broken files tolerated.

Decoding (under the same limits) and the resize-and-normalise come from the core
(``bga_mner.images``), the very functions the worker's tagger calls, so training and serving cannot
see different pixels. Most copies of the benchmarks come without (some of) their images, and a real
stream has posts without one, so a missing or unusable image is an expected case: it becomes a zero
tensor with `present=False`, is counted, and the model is told through `image_mask`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bga_mner.images import IMAGENET_MEAN, IMAGENET_STD, ImageError, decode_image, image_tensor
from bga_mner.posts import LimitSettings

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".gif", ".webp")


@dataclass
class ImageLoader:
    """Loads `<image_dir>/<image_id>.jpg` (or another common suffix) as a normalised [3, H, W] array."""

    image_dir: Path | None
    size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    counts: Counter[str] = field(default_factory=Counter)
    limits: LimitSettings = field(default_factory=LimitSettings)

    def zero_image(self) -> npt.NDArray[np.float32]:
        return np.zeros((3, self.size, self.size), dtype=np.float32)

    def _find(self, image_id: str) -> Path | None:
        if self.image_dir is None:
            return None
        for suffix in IMAGE_SUFFIXES:
            candidate = self.image_dir / f"{image_id}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def load(self, image_id: str | None) -> tuple[npt.NDArray[np.float32], bool]:
        """(pixels, present): pixels are float32 [3, size, size]; zeros when the image is unusable."""
        path = self._find(image_id) if image_id is not None else None
        if path is None:
            self.counts["missing"] += 1
            return self.zero_image(), False
        try:
            pixels = image_tensor(
                decode_image(path.read_bytes(), self.limits), self.size, self.mean, self.std
            )
        except (OSError, ImageError) as error:
            self.counts["corrupt"] += 1
            logger.warning("image %s unreadable (%s); using a zero image", path, error)
            return self.zero_image(), False
        self.counts["loaded"] += 1
        return pixels, True

    def log_summary(self, what: str) -> None:
        total = sum(self.counts.values())
        if total:
            logger.info(
                "%s images: %d loaded, %d missing, %d corrupt (of %d)",
                what,
                self.counts["loaded"],
                self.counts["missing"],
                self.counts["corrupt"],
                total,
            )


def image_loader(image_dir: Path | None, image_encoder: str) -> ImageLoader:
    """A loader producing exactly the size and normalisation the configured image encoder expects."""
    from training.model.image_encoder import image_spec

    spec = image_spec(image_encoder)
    return ImageLoader(image_dir, size=spec.size, mean=spec.mean, std=spec.std)
