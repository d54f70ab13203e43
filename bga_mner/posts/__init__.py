"""The input contract (a post as JSON) and its size limits: what producers send and the worker accepts."""

from __future__ import annotations

from bga_mner.posts.limits import IMAGE_FORMATS, LimitSettings
from bga_mner.posts.schema import (
    ImageRef,
    InvalidPost,
    InvalidReason,
    Post,
    check_limits,
    parse_post,
    post_json_schema,
    render_post_json_schema,
)

__all__ = [
    "IMAGE_FORMATS",
    "ImageRef",
    "InvalidPost",
    "InvalidReason",
    "LimitSettings",
    "Post",
    "check_limits",
    "parse_post",
    "post_json_schema",
    "render_post_json_schema",
]
