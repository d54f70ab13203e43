"""The input contract: what becomes a Post and which reason the DLQ records for what does not."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from bga_mner.posts import InvalidPost, LimitSettings, Post, parse_post

LIMITS = LimitSettings(max_text_chars=50, max_image_bytes=16)


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def reason_of(message: bytes) -> str:
    with pytest.raises(InvalidPost) as caught:
        parse_post(message, LIMITS)
    return caught.value.reason


def test_minimal_post_and_unknown_fields_ignored() -> None:
    post = parse_post(raw({"id": "p1", "text": "Obama in Paris", "retweets": 3, "extra": {"a": 1}}), LIMITS)
    assert post == Post(id="p1", text="Obama in Paris")


def test_all_optional_fields() -> None:
    image = base64.b64encode(b"\x89PNG tiny").decode()
    post = parse_post(
        raw(
            {
                "id": "p2",
                "text": "x",
                "created_at": "2024-05-01T12:00:00Z",
                "lang": "en",
                "user": {"id": 7, "name": "n"},
                "image": {"data": image, "url": "https://example.org/a.png"},
            }
        ),
        LIMITS,
    )
    assert post.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert post.user == {"id": 7, "name": "n"}
    assert post.image is not None and post.image.data == b"\x89PNG tiny"
    assert post.image.url == "https://example.org/a.png"
    assert parse_post(raw({"id": "p3", "text": "x", "user": "alice"}), LIMITS).user == "alice"


def test_unicode_text_is_kept_exactly() -> None:
    text = "שלום 👩‍👩‍👧 @a\u200bb #tag https://t.co/x"
    assert parse_post(raw({"id": "u", "text": text}), LIMITS).text == text


@pytest.mark.parametrize(
    "message", [b"{", b"\xff\xfe\x00", b"", b"not json", b'{"id": "1", "text": "x"} trailing']
)
def test_not_json(message: bytes) -> None:
    assert reason_of(message) == "invalid_json"


@pytest.mark.parametrize(
    "value",
    [
        [],
        "a string",
        None,
        {"text": "no id"},
        {"id": "", "text": "empty id"},
        {"id": 12, "text": "id must be a string"},
        {"id": "1"},
        {"id": "1", "text": 5},
        {"id": "1", "text": "x", "created_at": "yesterday"},
        {"id": "1", "text": "x", "image": {}},
        {"id": "1", "text": "x", "image": {"data": "not base64!"}},
        {"id": "1", "text": "x", "image": {"data": "YWJ"}},  # bad padding
    ],
)
def test_schema_errors(value: object) -> None:
    assert reason_of(raw(value)) == "schema"


def test_detail_names_the_field_without_echoing_the_input() -> None:
    with pytest.raises(InvalidPost) as caught:
        parse_post(raw({"id": "1", "text": "secret-ish text", "created_at": "yesterday"}), LIMITS)
    assert "created_at" in caught.value.detail
    assert "secret-ish" not in caught.value.detail


def test_oversize_text_and_image() -> None:
    assert parse_post(raw({"id": "1", "text": "a" * 50}), LIMITS).text == "a" * 50
    assert reason_of(raw({"id": "1", "text": "a" * 51})) == "oversize"
    ok = base64.b64encode(b"x" * 16).decode()
    assert parse_post(raw({"id": "1", "text": "t", "image": {"data": ok}}), LIMITS).image is not None
    too_big = base64.b64encode(b"x" * 17).decode()
    assert reason_of(raw({"id": "1", "text": "t", "image": {"data": too_big}})) == "oversize"


def test_huge_message_is_refused_before_parsing() -> None:
    message = b'{"id": "1", "text": "' + b"a" * (LIMITS.max_message_bytes() + 1) + b'"}'
    with pytest.raises(InvalidPost) as caught:
        parse_post(message, LIMITS)
    assert caught.value.reason == "oversize"
    assert "bytes" in caught.value.detail


def test_an_overlong_post_id_is_refused() -> None:
    """The id is a Redis key: a 100,000-character id must not become one."""
    with pytest.raises(InvalidPost) as info:
        parse_post(raw({"id": "x" * 100_000, "text": "hi"}), LimitSettings())
    assert info.value.reason == "oversize" and "id has 100000 characters" in info.value.detail
    assert parse_post(raw({"id": "x" * 256, "text": "hi"}), LimitSettings()).id == "x" * 256
