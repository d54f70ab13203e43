"""The Redis key schema is defined once; trending counts an entity by its normalised text."""

from __future__ import annotations

from bga_mner.results import ResultKeys, bucket_start, normalise_entity, trending_member


def test_normalise_entity() -> None:
    assert normalise_entity("  Taylor\u00a0 SWIFT ") == "taylor swift"
    assert normalise_entity("ＮＡＳＡ") == "nasa"  # fullwidth -> NFKC
    assert normalise_entity("Straße") == "strasse"


def test_trending_member_is_type_and_normalised_text() -> None:
    assert trending_member("PER", " Taylor  Swift") == "PER|taylor swift"


def test_keys_follow_the_documented_schema() -> None:
    keys = ResultKeys("{bga}")
    assert keys.post("1") == "{bga}:post:1"
    assert keys.marker("1") == "{bga}:counted:1"
    assert keys.trending(300) == "{bga}:trending:300"
    assert keys.bucket_index == "{bga}:trending:buckets"
    assert keys.stream == "{bga}:results"
    assert bucket_start(599.9, 300) == 300 and bucket_start(600, 300) == 600
