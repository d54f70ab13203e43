"""Hostile input: a corpus of more than 60 kinds of bad (and merely odd) messages through a real worker,
plus property-based fuzzing of post parsing and image decoding.

The worker never crashes; every message that can never become a post lands in the DLQ with its
reason; every valid post (odd text, an image URL that must not be fetched, an unusable URL) lands in
Redis, tagged from its text when its image cannot be used.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bga_mner.errors import InvalidInput
from bga_mner.images import decode_image
from bga_mner.posts import InvalidPost, LimitSettings, parse_post
from bga_mner.stack.local import LocalStack
from tests.core.images.test_decode import png_bomb
from tests.integration.worker_support import produce, serve_tiny_model, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import ProxiedBroker, dead_letter_reasons, rig, worker_log_tail

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def _image(fmt: str, size: tuple[int, int] = (16, 16), **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _post(post_id: str, text: str = "Barack Obama visits Paris", **extra: Any) -> bytes:
    return json.dumps({"id": post_id, "text": text, **extra}, ensure_ascii=False).encode()


Case = tuple[str, bytes | None, str]  # key, value, expected: "redis" or "dlq:<reason>"


def corpus() -> list[Case]:
    png, gif, bmp, webp = _image("PNG"), _image("GIF"), _image("BMP"), _image("WEBP")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'
    cases: list[Case] = [
        # encodings
        ("enc-latin1", '{"id": "enc-latin1", "text": "caf\u00e9"}'.encode("latin-1"), "dlq:invalid_json"),
        ("enc-utf16", _post("enc-utf16").decode().encode("utf-16"), "dlq:invalid_json"),
        ("enc-bom", b"\xef\xbb\xbf" + _post("enc-bom"), "dlq:invalid_json"),
        ("enc-overlong", b'{"id": "enc-overlong", "text": "\xc0\xaf"}', "dlq:invalid_json"),
        ("enc-surrogate", b'{"id": "enc-surrogate", "text": "a\\ud800b"}', "dlq:invalid_json"),
        ("enc-nul-bytes", b"\x00\x00\x00\x00", "dlq:invalid_json"),
        ("enc-empty", b"", "dlq:invalid_json"),
        # JSON shapes
        ("shape-array", b'[{"id": "x", "text": "y"}]', "dlq:schema"),
        ("shape-number", b"42", "dlq:schema"),
        ("shape-string", b'"a post"', "dlq:schema"),
        ("shape-null", b"null", "dlq:schema"),
        (
            "shape-deep",
            b'{"id": "shape-deep", "text": "x", "user": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
            "dlq:invalid_json",
        ),
        ("shape-truncated", _post("shape-truncated")[:-3], "dlq:invalid_json"),
        ("shape-trailing", _post("shape-trailing") + b" garbage", "dlq:invalid_json"),
        (
            "shape-duplicate-keys",
            b'{"id": "shape-duplicate-keys", "text": "one", "text": "two Paris"}',
            "redis",
        ),
        ("shape-nan", b'{"id": "shape-nan", "text": NaN}', "dlq:schema"),  # NaN parses; a number is no text
        # types
        ("type-id-number", b'{"id": 42, "text": "x"}', "dlq:schema"),
        ("type-text-number", b'{"id": "type-text-number", "text": 7}', "dlq:schema"),
        ("type-text-null", b'{"id": "type-text-null", "text": null}', "dlq:schema"),
        ("type-no-text", b'{"id": "type-no-text"}', "dlq:schema"),
        ("type-no-id", b'{"text": "who am I"}', "dlq:schema"),
        ("type-date", _post("type-date", created_at="yesterday"), "dlq:schema"),
        ("type-user-list", _post("type-user-list", user=[1, 2]), "dlq:schema"),
        ("type-image-string", _post("type-image-string", image="cat.png"), "dlq:schema"),
        ("type-image-empty", _post("type-image-empty", image={}), "dlq:schema"),
        ("type-image-base64url", _post("type-image-base64url", image={"data": "-_-_"}), "dlq:schema"),
        (
            "type-image-bad-base64",
            _post("type-image-bad-base64", image={"data": "not base64!"}),
            "dlq:schema",
        ),
        ("type-extra-fields", _post("type-extra-fields", retweets=3, entities={"x": 1}), "redis"),
        # sizes
        ("size-text", _post("size-text", "a" * 10_001), "dlq:oversize"),
        ("size-id", _post("i" * 300), "dlq:oversize"),
        ("size-message", b'{"id": "size-message", "text": "' + b"b" * 3_000_000 + b'"}', "dlq:oversize"),
        (
            "size-image",
            _post("size-image", image={"data": _b64(b"\0" * (5 * 1024 * 1024 + 1))}),
            "dlq:oversize",
        ),
        ("size-empty-text", _post("size-empty-text", ""), "redis"),
        ("size-max-text", _post("size-max-text", "Paris " * 1666), "redis"),
        # control and invisible characters, scripts
        ("ctl-nul", _post("ctl-nul", "Obama\u0000Paris"), "redis"),
        ("ctl-zero-width", _post("ctl-zero-width", "\u200b\u200c\u200d\ufeff Obama"), "redis"),
        ("ctl-rtl-override", _post("ctl-rtl-override", "\u202eObama Paris\u202c"), "redis"),
        ("ctl-emoji-zwj", _post("ctl-emoji-zwj", "👩‍👩‍👧 family in London 🇬🇧"), "redis"),
        ("ctl-combining", _post("ctl-combining", "Z\u0351\u0352\u0353algo in Berlin"), "redis"),
        ("ctl-only-spaces", _post("ctl-only-spaces", " \t\n\r "), "redis"),
        ("ctl-cjk", _post("ctl-cjk", "東京で会いましょう Tokyo"), "redis"),
        ("ctl-newlines", _post("ctl-newlines", "line one\nline two\r\nParis"), "redis"),
        # ids
        ("", _post(""), "dlq:schema"),
        ("id-spaces", _post("   "), "redis"),
        ("id-keyish", _post("a:b:*:{x}"), "redis"),
        ("id-unicode", _post("ποστ-🆔"), "redis"),
        ("id-newline", _post("two\nlines"), "redis"),
        # inline images (the model is image-aware)
        ("img-png", _post("img-png", image={"data": _b64(png)}), "redis"),
        ("img-gif", _post("img-gif", image={"data": _b64(gif)}), "redis"),
        ("img-bmp", _post("img-bmp", image={"data": _b64(bmp)}), "redis"),
        ("img-webp", _post("img-webp", image={"data": _b64(webp)}), "redis"),
        (
            "img-corrupt",
            _post("img-corrupt", image={"data": _b64(b"\x89PNG\r\n\x1a\n" + b"\xff" * 64)}),
            "dlq:undecodable_image",
        ),
        (
            "img-truncated",
            _post("img-truncated", image={"data": _b64(_image("JPEG")[:100])}),
            "dlq:undecodable_image",
        ),
        (
            "img-bomb",
            _post("img-bomb", image={"data": _b64(png_bomb(100_000, 100_000))}),
            "dlq:image_too_large",
        ),
        (
            "img-giant",
            _post("img-giant", image={"data": _b64(png_bomb(30_000, 1_000))}),
            "dlq:image_too_large",
        ),
        ("img-svg", _post("img-svg", image={"data": _b64(svg)}), "dlq:undecodable_image"),
        ("img-pdf", _post("img-pdf", image={"data": _b64(b"%PDF-1.4\n%...")}), "dlq:undecodable_image"),
        ("img-tiff", _post("img-tiff", image={"data": _b64(_image("TIFF"))}), "dlq:undecodable_image"),
        ("img-empty", _post("img-empty", image={"data": ""}), "dlq:undecodable_image"),
        # image URLs: never the post's fault; at worst the post is tagged from its text
        ("url-private", _post("url-private", image={"url": "https://10.0.0.1/a.png"}), "redis"),
        ("url-loopback", _post("url-loopback", image={"url": "https://localhost/a.png"}), "redis"),
        ("url-metadata", _post("url-metadata", image={"url": "https://169.254.169.254/latest"}), "redis"),
        ("url-file", _post("url-file", image={"url": "file:///etc/passwd"}), "redis"),
        (
            "url-userinfo",
            _post("url-userinfo", image={"url": "https://u:p@images.example.com/a.png"}),
            "redis",
        ),
        (
            "url-backslash",
            _post("url-backslash", image={"url": "https://evil.example\\@images.example.com/"}),
            "redis",
        ),
        ("url-bad-ipv6", _post("url-bad-ipv6", image={"url": "https://[::1/x"}), "redis"),
        ("url-ipv6", _post("url-ipv6", image={"url": "https://[::1]/a.png"}), "redis"),
        ("url-http", _post("url-http", image={"url": "http://images.example.com/a.png"}), "redis"),
        (
            "url-unresolvable",
            _post("url-unresolvable", image={"url": "https://images.example.com/a.png"}),
            "redis",
        ),
        ("url-relative", _post("url-relative", image={"url": "/a.png"}), "redis"),
        ("url-huge", _post("url-huge", image={"url": "https://images.example.com/" + "a" * 5000}), "redis"),
        # a tombstone: skipped, never dead-lettered
        ("tombstone", None, "skip"),
    ]
    return cases


def test_a_hostile_corpus_never_crashes_the_worker(
    local_stack: LocalStack,
    proxied_broker: ProxiedBroker,
    load_triton_model: Any,
    tmp_path: Path,
    figures: Figures,
) -> None:
    model = serve_tiny_model(load_triton_model, tmp_path / "repository", prefix="hostile", image_size=8)
    cases = corpus()
    assert len({key for key, _, _ in cases}) == len(cases) and len(cases) >= 60
    with rig(
        local_stack,
        proxied_broker,
        tmp_path / "rig",
        model,
        partitions=2,
        sections={
            "images": {
                "fetch_urls": True,
                "allowed_hosts": ["images.example.com", "localhost"],
                "timeout_s": 2.0,
            },
            "dlq": {"max_ratio": 1.0, "max_consecutive": 1000},  # nearly all of it is bad on purpose
        },
    ) as r:
        produce(proxied_broker.bootstrap, r.topic, ((key.encode(), value) for key, value, _ in cases))
        for _key, value, expected in cases:
            if expected == "redis":
                assert value is not None
                r.posts.append({"id": json.loads(value)["id"], "text": ""})
        worker = r.start_worker()
        wait_until(r.all_committed, 180, "every hostile message to be handled")
        assert worker.poll() is None, "the worker crashed:\n" + worker_log_tail(r)
        assert r.stop_worker(worker) == 0, worker_log_tail(r)
        dead = {
            key: f"dlq:{reason}"
            for key, reason in dead_letter_reasons(
                r, expected=sum(1 for c in cases if c[2].startswith("dlq"))
            ).items()
        }
        expected_dead = {key: want for key, _, want in cases if want.startswith("dlq")}
        assert dead == expected_dead
        assert r.stored() == len(r.posts), "a valid post is missing from Redis"
        figures.record(
            "hostile corpus",
            kinds=len(cases),
            dead_lettered=len(dead),
            stored=len(r.posts),
            skipped_tombstones=1,
            worker_crashes=0,
        )


_LIMITS = LimitSettings(max_text_chars=200, max_image_bytes=4096, max_image_pixels=64 * 64, max_id_chars=32)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.builds(lambda v: json.dumps(v).encode(), _json_values))
def test_parsing_arbitrary_bytes_only_ever_raises_invalid_post(raw: bytes) -> None:
    try:
        post = parse_post(raw, _LIMITS)
    except InvalidPost:
        return
    # Whatever parses can be written: valid UTF-8 all through, within the limits.
    post.model_dump_json().encode("utf-8")
    assert len(post.id) <= _LIMITS.max_id_chars and len(post.text) <= _LIMITS.max_text_chars


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=40), "text": st.text(max_size=300)},
        optional={
            "created_at": st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=10),
            "image": st.fixed_dictionaries(
                {}, optional={"data": st.binary(max_size=64).map(_b64), "url": st.text(max_size=40)}
            ),
            "user": _json_values,
        },
    )
)
def test_post_shaped_json_parses_or_is_refused_with_a_reason(value: dict[str, Any]) -> None:
    try:
        post = parse_post(json.dumps(value).encode(), _LIMITS)
    except InvalidPost as refused:
        assert refused.reason in ("schema", "oversize", "invalid_json")
        return
    assert post.id == value["id"]


_IMAGE_PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"BM", b"RIFF\0\0\0\0WEBP"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_IMAGE_PREFIXES), st.binary(max_size=2048))
def test_decoding_arbitrary_bytes_only_ever_raises_image_error(prefix: bytes, body: bytes) -> None:
    try:
        image = decode_image(prefix + body, _LIMITS)
    except InvalidInput as refused:
        assert refused.reason in ("undecodable_image", "image_too_large")
        return
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= _LIMITS.max_image_pixels
