"""Alert rules, runbooks and the Grafana dashboard: unit-tested by the real promtool, cross-checked.

The promtool tests (deploy/prometheus/alerts.test.yaml) run on series shaped like real ones. Here we also
prove they are not vacuous: every alert is broken twice (never fires / always fires) and promtool must
notice both times, and the Triton error rule the project shipped before (which summed series whose label
sets differ, and so never fired against Triton 24.10's `reason` label) must fail the realistic case.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT, Manifest
from tests.deploy.metric_sources import (
    KAFKA_EXPORTER_METRICS,
    KUBE_STATE_METRICS,
    PROMETHEUS_METRICS,
    TRITON_METRICS,
    metric_names,
    worker_metrics,
)

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "bga-mner-dashboard.json"
DEPLOY_README = DEPLOY / "README.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/bga-mner/bga-mner/blob/main/docs/runbooks.md#"
# The rule as shipped before Triton's `reason` label was handled (kept: the tests must catch it).
OLD_TRITON_ERRORS_EXPR = (
    'sum by (model) (rate(nv_inference_request_failure{model="bga_mner"}[5m])) / clamp_min(sum by (model) '
    '(rate(nv_inference_request_success{model="bga_mner"}[5m]) + rate(nv_inference_request_failure'
    '{model="bga_mner"}[5m])), 1e-9) > 0.01'
)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (scripts/install_test_tools.sh: apt-get install -y prometheus)")
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    return rules


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in _rules()["groups"] for rule in group["rules"]}


def _test_with_rules(
    rules: dict[str, Any], directory: Path, only: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the unit tests against ``rules``; ``only``: just the cases that check that alert (faster)."""
    (directory / "alerts.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yaml").read_text())
    if only is not None:
        for case in tests["tests"]:
            case["alert_rule_test"] = [t for t in case["alert_rule_test"] if t["alertname"] == only]
        tests["tests"] = [case for case in tests["tests"] if case["alert_rule_test"]]
    (directory / "alerts.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return _run(_promtool(), "test", "rules", "alerts.test.yaml", cwd=directory)


def _with_expr(alert: str, expr: str) -> dict[str, Any]:
    rules = _rules()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = expr.replace("{EXPR}", f"({rule['expr']})")
    return rules


def test_alert_rules_check_and_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", "alerts.yaml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts.test.yaml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_every_alert_has_a_firing_and_a_quiet_case(alert: str, tmp_path: Path) -> None:
    """An alert that never fires, or fires all the time, must fail the unit tests, naming that alert."""
    never = _test_with_rules(_with_expr(alert, "{EXPR} and on() vector(0) > 1"), tmp_path, only=alert)
    assert never.returncode != 0, f"no test expects {alert} to fire"
    assert f"alertname: {alert}," in never.stdout + never.stderr
    always = _test_with_rules(_with_expr(alert, "{EXPR} or on() vector(1)"), tmp_path, only=alert)
    assert always.returncode != 0, f"no test expects {alert} to stay quiet"
    assert f"alertname: {alert}," in always.stdout + always.stderr


def test_the_old_triton_error_rule_fails_the_realistic_case(tmp_path: Path) -> None:
    """With Triton 24.10's `reason` label on failures, `success + failure` matches no series: no alert."""
    result = _test_with_rules(_with_expr("BgaMnerTritonErrors", OLD_TRITON_ERRORS_EXPR), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "alertname: BgaMnerTritonErrors, time: 15m" in output
    assert "got:[]" in output


def test_alerts_are_grouped_by_namespace_or_consumer_group() -> None:
    """Summing across namespaces would let a healthy installation hide a broken one."""
    for name, rule in _alerts().items():
        expr = rule["expr"]
        assert not re.search(r"\b(sum|max|min|avg|count)\s*\(", expr), f"{name}: aggregation without `by`"
        for labels in re.findall(r"\b(?:sum|max|min|avg|count) by \(([^)]*)\)", expr):
            keys = {label.strip() for label in labels.split(",")}
            assert "namespace" in keys or {"consumergroup", "topic"} <= keys, f"{name}: by ({labels})"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_with_the_three_answers() -> None:
    text = RUNBOOKS.read_text()
    sections = dict(
        (_anchor(m.group(1)), m.group(2))
        for m in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    )
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        url = rule["annotations"]["runbook_url"]
        assert url == RUNBOOK_BASE + name.lower(), url
        section = sections.get(name.lower())
        assert section is not None, f"docs/runbooks.md has no '## {name}'"
        for answer in ("**What it means**", "**How to confirm**", "**What to do**"):
            assert answer in section, f"{name}: {answer} missing"


def test_operator_rule_matches_the_rule_file() -> None:
    result = _run("python3", str(PROMETHEUS / "sync_rules.py"), "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    operator = yaml.safe_load((DEPLOY / "k8s" / "base" / "prometheus-rules.yaml").read_text())
    assert operator["spec"]["groups"] == _rules()["groups"]


def test_monitoring_objects_are_selected_by_kube_prometheus_stack(
    overlay: tuple[str, list[Manifest]],
) -> None:
    """kube-prometheus-stack only loads ServiceMonitors/PrometheusRules with its release label."""
    _, manifests = overlay
    monitoring = [m for m in manifests if m["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {m["kind"] for m in monitoring} == {"ServiceMonitor", "PrometheusRule"}
    releases = {m["metadata"]["labels"].get("release") for m in monitoring}
    assert len(releases) == 1 and None not in releases, releases


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _dashboard_queries() -> list[str]:
    return [target["expr"] for panel in _dashboard()["panels"] for target in panel["targets"]]


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
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    alerts = set(_alerts())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        assert set(re.findall(r"BgaMner[A-Za-z]+", panel.get("description", ""))) <= alerts, panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables


def test_every_queried_metric_exists_where_it_is_said_to_come_from() -> None:
    """Each name an alert or a panel queries is one the worker's registry, Triton 24.10, kafka-exporter,
    kube-state-metrics or Prometheus itself exposes: a renamed metric cannot leave an alert silently blind."""
    known = (
        worker_metrics() | TRITON_METRICS | KAFKA_EXPORTER_METRICS | KUBE_STATE_METRICS | PROMETHEUS_METRICS
    )
    used: set[str] = set()
    for expr in [rule["expr"] for rule in _alerts().values()] + _dashboard_queries():
        names = metric_names(expr)
        assert names, expr
        used |= names
    assert used - known == set(), f"unknown metrics: {sorted(used - known)}"
    assert {n for n in used if n.startswith("bga_mner_")} <= worker_metrics()
    assert {n for n in used if n.startswith("nv_")} <= TRITON_METRICS


def test_the_metric_checker_catches_a_renamed_metric() -> None:
    assert metric_names('sum by (namespace) (rate(bga_mner_posts_consumd_total{topic="x"}[5m])) > 1e-9') == {
        "bga_mner_posts_consumd_total"
    }
    assert "bga_mner_posts_consumd_total" not in worker_metrics()


def test_worker_metrics_used_are_documented() -> None:
    """deploy/README.md's metric table lists every worker metric the alerts and the dashboard query."""
    used = set()
    for expr in [rule["expr"] for rule in _alerts().values()] + _dashboard_queries():
        used |= {
            re.sub(r"_(bucket|sum|count)$", "", n) for n in metric_names(expr) if n.startswith("bga_mner_")
        }
    documented = set(re.findall(r"`(bga_mner_[a-z_]+)`", DEPLOY_README.read_text()))
    assert used and used <= documented, f"undocumented metrics: {sorted(used - documented)}"


def test_runbook_and_operations_links_resolve() -> None:
    """Anchors the runbooks link to (their own sections, operations.md's, capacity.md's) exist."""
    docs = ROOT / "docs"
    anchors = {
        name: {_anchor(h) for h in re.findall(r"^#+ ([^\n]+)$", (docs / name).read_text(), re.M)}
        for name in ("runbooks.md", "operations.md", "capacity.md", "worker.md")
    }
    for source in ("runbooks.md", "operations.md", "capacity.md"):
        for target, anchor in re.findall(r"\]\(([a-z]*\.md)?#([a-z0-9-]+)\)", (docs / source).read_text()):
            assert anchor in anchors[target or source], f"{source}: {target}#{anchor}"
