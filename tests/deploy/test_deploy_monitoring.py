"""Alert rules and the Grafana dashboard: parsed and unit-tested by the real promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "bga-mner-dashboard.json"
DEPLOY_README = DEPLOY / "README.md"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_alert_rules_check_and_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", "alerts.yaml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts.test.yaml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alert_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: raising the lag threshold makes them fail."""
    promtool = _promtool()
    rules = (PROMETHEUS / "alerts.yaml").read_text().replace("> 10000", "> 100000")
    (tmp_path / "alerts.yaml").write_text(rules)
    shutil.copy(PROMETHEUS / "alerts.test.yaml", tmp_path)
    tested = _run(promtool, "test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "BgaMnerConsumerLagHigh" in tested.stdout + tested.stderr


def test_every_required_alert_exists() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    required = {
        "BgaMnerConsumerLagHigh",
        "BgaMnerDeadLetterRateHigh",
        "BgaMnerTritonErrors",
        "BgaMnerCircuitOpen",
    }
    assert required <= alerts.keys()
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_operator_rule_matches_the_rule_file() -> None:
    result = _run("python3", str(PROMETHEUS / "sync_rules.py"), "--check", cwd=DEPLOY.parent)
    assert result.returncode == 0, result.stderr
    operator = yaml.safe_load((DEPLOY / "k8s" / "base" / "prometheus-rules.yaml").read_text())
    plain = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    assert operator["spec"]["groups"] == plain["groups"]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Grafana is not installable here: the queries are parsed by promtool as recording rules instead."""
    promtool = _promtool()
    queries = _dashboard_queries()
    assert len(queries) >= 10
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m")}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    (tmp_path / "dashboard-rules.yaml").write_text(yaml.safe_dump(rules))
    checked = _run(promtool, "check", "rules", "dashboard-rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_layout_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_worker_metrics_used_by_alerts_and_dashboard_are_documented() -> None:
    """deploy/README.md's metric table is the list the worker must expose; nothing outside it is queried."""
    text = (PROMETHEUS / "alerts.yaml").read_text() + "\n".join(_dashboard_queries())
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bbga_mner_[a-z_]+", text)}
    documented = set(re.findall(r"`(bga_mner_[a-z_]+)`", DEPLOY_README.read_text()))
    assert used, "no worker metric referenced"
    assert used <= documented, f"undocumented metrics: {sorted(used - documented)}"
