"""benchmarks/redis_capacity.py on a real redis-server: the command docs/capacity.md's numbers come from,
and the compact mode it measures (BGA_REDIS__STORE_RECORDS=false writes no record, everything else alike).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.deploy.conftest import ROOT

BENCHMARK = ROOT / "benchmarks" / "redis_capacity.py"
RESULTS = ROOT / "benchmarks" / "results" / "redis_capacity.json"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (os.environ.get("BGA_REDIS_SERVER") or shutil.which("redis-server")):
        pytest.skip("redis-server not installed (scripts/install_redis.sh)")
    out = tmp_path_factory.mktemp("capacity") / "redis_capacity.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--posts", "2000", "--vocabulary", "5000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_compact_mode_writes_everything_but_the_records(small_run: dict[str, Any]) -> None:
    posts = small_run["posts"]
    # default: a record and a marker per post; compact: the marker only. Plus the stream, one trending
    # bucket and the bucket index in both.
    assert small_run["keys"] == {"default": 2 * posts + 3, "compact": posts + 3}
    assert small_run["stream"]["entries"] == posts
    assert small_run["trending"]["buckets"] == 1
    assert small_run["trending"]["distinct_members"] > 0
    per_post = small_run["bytes_per_post"]
    assert per_post["record"] > per_post["record_listpack"] > 0
    assert per_post["marker"] > 0 and per_post["trending"] > 0 and per_post["stream_entry"] > 0


def test_sizing_table_is_consistent(small_run: dict[str, Any]) -> None:
    rows = small_run["sizing"]
    assert len(rows) == 5 * 4
    for row in rows:
        assert row["default_gb"] > row["default_listpack_gb"] > row["compact_gb"] > 0
    by_key = {(r["posts_per_s"], r["retention_days"]): r for r in rows}
    # Linear in the rate (the stream is a fixed cap, hence the tolerance).
    assert by_key[(1000, 1)]["default_gb"] == pytest.approx(10 * by_key[(100, 1)]["default_gb"], rel=0.02)


def test_committed_results_have_no_machine_paths() -> None:
    text = RESULTS.read_text()
    for marker in ("/work", "/tmp", "/root", "/home"):
        assert marker not in text
    data = json.loads(text)
    assert data["posts"] == 100_000 and data["command"] == "python benchmarks/redis_capacity.py"
