"""The input contract: one JSON object per Kafka message, one post per message.

Validation happens once, at the edge, so everything downstream can trust a ``Post``. A message
that can never succeed is reported as ``InvalidPost`` (an ``InvalidInput``) with a short
machine-readable reason; the worker dead-letters it instead of retrying. Unknown fields are
ignored so producers can add fields without breaking running workers. The JSON Schema in
docs/post.schema.json is generated from these models (``python -m bga_mner.posts.schema``) and a
test keeps it up to date.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from bga_mner.errors import InvalidInput
from bga_mner.posts.limits import LimitSettings

InvalidReason = Literal["invalid_json", "schema", "oversize"]

_MAX_DETAIL_CHARS = 500


class InvalidPost(InvalidInput):
    """A message that will never become a valid post; carries what the DLQ headers record."""

    def __init__(self, reason: InvalidReason, detail: str) -> None:
        super().__init__(reason, detail[:_MAX_DETAIL_CHARS])
        self.reason: InvalidReason = reason


def _strict_base64(value: Any) -> Any:
    """Standard base64 with padding, nothing else: lenient decoding would turn garbage into an "image"."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as error:
            raise ValueError(f"not valid base64: {error}") from None
    return value


StrictBase64Bytes = Annotated[
    bytes,
    BeforeValidator(_strict_base64),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class ImageRef(BaseModel):
    """An image attached to a post: inline bytes, a URL, or both (inline wins)."""

    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_bytes="base64")

    data: StrictBase64Bytes | None = Field(default=None, description="the image file, base64 (RFC 4648)")
    url: str | None = Field(
        default=None,
        min_length=1,
        description="fetched only when the operator enables it (allow-listed hosts)",
    )

    @model_validator(mode="after")
    def _something(self) -> ImageRef:
        if self.data is None and self.url is None:
            raise ValueError("image needs 'data' or 'url'")
        return self


class Post(BaseModel):
    """A social-media post. The Kafka message key should be the post id (it keeps a post's partition)."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        title="Post",
    )

    id: str = Field(min_length=1, description="unique post id; the record key in Redis")
    text: str = Field(description="the post's text, any Unicode; entity offsets index into it")
    created_at: datetime | None = Field(
        default=None, description="ISO 8601; the trending bucket uses it when given"
    )
    lang: str | None = Field(default=None, description="language tag, informational")
    user: str | dict[str, Any] | None = Field(default=None, description="author id or object, passed through")
    image: ImageRef | None = None


def parse_post(raw: bytes, limits: LimitSettings) -> Post:
    """Validate one Kafka message value; raise ``InvalidPost`` with the reason the DLQ records."""
    if len(raw) > limits.max_message_bytes():
        raise InvalidPost("oversize", f"message of {len(raw)} bytes exceeds {limits.max_message_bytes()}")
    try:
        post = Post.model_validate_json(raw)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        reason: InvalidReason = (
            "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else "schema"
        )
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors)
        raise InvalidPost(reason, detail) from None
    check_limits(post, limits)
    return post


def check_limits(post: Post, limits: LimitSettings) -> None:
    """Raise ``InvalidPost("oversize")`` when a valid post is larger than the limits allow."""
    if len(post.id) > limits.max_id_chars:
        raise InvalidPost("oversize", f"id has {len(post.id)} characters, limit {limits.max_id_chars}")
    if len(post.text) > limits.max_text_chars:
        raise InvalidPost("oversize", f"text has {len(post.text)} characters, limit {limits.max_text_chars}")
    image_bytes = post.image.data if post.image is not None else None
    if image_bytes is not None and len(image_bytes) > limits.max_image_bytes:
        raise InvalidPost("oversize", f"image has {len(image_bytes)} bytes, limit {limits.max_image_bytes}")


def post_json_schema() -> dict[str, Any]:
    """The published input contract (validation mode: what producers may send)."""
    return Post.model_json_schema(mode="validation")


def render_post_json_schema() -> str:
    return json.dumps(post_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_post_json_schema())
