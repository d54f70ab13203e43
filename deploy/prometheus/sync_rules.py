"""Regenerate deploy/k8s/base/prometheus-rules.yaml from deploy/prometheus/alerts.yaml.

One source of truth for the alerts: plain Prometheus loads the rule file (and promtool unit-tests it),
Prometheus Operator gets the same groups wrapped in a PrometheusRule. ``--check`` exits 1 on drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "alerts.yaml"
TARGET = HERE.parent / "k8s" / "base" / "prometheus-rules.yaml"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yaml (Prometheus Operator CRD); a test in tests/deploy/\n"
    "# fails when the two differ. Regenerate: python deploy/prometheus/sync_rules.py\n"
)


def prometheus_rule(rules_file: Path = RULES) -> dict[str, Any]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "bga-mner", "labels": {"app.kubernetes.io/name": "bga-mner"}},
        "spec": {"groups": groups},
    }


def render(rules_file: Path = RULES) -> str:
    return HEADER + yaml.safe_dump(prometheus_rule(rules_file), sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the PrometheusRule is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        up_to_date = TARGET.is_file() and TARGET.read_text() == text
        if not up_to_date:
            print(f"{TARGET} is out of date: run python deploy/prometheus/sync_rules.py", file=sys.stderr)
        return 0 if up_to_date else 1
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
