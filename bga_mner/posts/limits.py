"""Size limits on what a post may carry: one definition for the worker, `bga-mner tag` and the parsers.

A post comes from a stranger, so its text, its image bytes and the image's pixel count are capped
before anything expensive happens. The worker reads these from ``BGA_LIMITS__*`` (they are a
section of ``WorkerSettings``); `bga-mner tag` uses the same defaults, so it accepts exactly what
the worker accepts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
"""Image formats decoded at all; anything else (SVG, TIFF, PDF...) is refused before decoding."""

# Generous allowance for JSON syntax, escapes and optional metadata on top of the limits, so a huge
# message is refused before it is parsed (and before base64 is decoded).
_SLACK = 64 * 1024


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_text_chars: int = Field(default=10_000, gt=0, description="longer posts are dead-lettered (oversize)")
    max_image_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="decoded image bytes")
    max_image_pixels: int = Field(
        default=20_000_000, gt=0, description="width*height; larger = decompression bomb"
    )
    max_id_chars: int = Field(
        default=256, gt=0, description="longer post ids are dead-lettered (the id is a Redis key)"
    )

    def max_message_bytes(self) -> int:
        """The largest Kafka message worth parsing: the largest valid post, fully escaped, plus slack.

        Text may be \\uXXXX-escaped (at most 6 bytes per character); base64 grows bytes by 4/3.
        """
        return 6 * self.max_text_chars + (4 * self.max_image_bytes) // 3 + 4 + 6 * self.max_id_chars + _SLACK
