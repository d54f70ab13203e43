"""docs/post.schema.json is what producers code against: it must match the model the worker runs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from bga_mner.posts import post_json_schema, render_post_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs" / "post.schema.json"


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_post_json_schema(), (
        "docs/post.schema.json is stale: regenerate it with "
        "`python -m bga_mner.posts.schema > docs/post.schema.json`"
    )


def test_schema_accepts_a_post_and_rejects_a_missing_id() -> None:
    schema = post_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate({"id": "1", "text": "hi", "image": {"url": "https://example.org/x.jpg"}, "other": 1})
    assert not validator.is_valid({"text": "hi"})
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["required"] == ["id", "text"]
