"""Custom resources (KEDA, Prometheus Operator) validated offline against the project's own schemas.

kubernetes-validate knows only built-in kinds; without this, a misspelled ScaledObject field or a boolean
where KEDA wants a string would be found only by the API server (or silently ignored by the operator).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from tests.deploy.conftest import Manifest, find, render_overlay
from tests.deploy.crd_schemas import CUSTOM_GROUPS, SCHEMAS


def _validate(manifest: Manifest) -> None:
    schema = SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
    assert schema is not None, f"no schema for {manifest['apiVersion']} {manifest['kind']}: add one"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft202012Validator)


def test_every_custom_resource_is_valid(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    custom = [m for m in manifests if m["apiVersion"].startswith(CUSTOM_GROUPS)]
    kinds = {m["kind"] for m in custom}
    expected = {"ServiceMonitor", "PrometheusRule"} | (
        {"ScaledObject", "TriggerAuthentication"} if name == "production" else set()
    )
    assert kinds == expected
    for manifest in custom:
        _validate(manifest)


def _production(kind: str, name: str) -> Manifest:
    return copy.deepcopy(find(render_overlay("production"), kind, name))


def _set(obj: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("kind", "name", "path", "value"),
    [
        # The HPA's field name instead of KEDA's.
        ("ScaledObject", "bga-mner-worker", ["spec", "maxReplicas"], 12),
        # Trigger metadata is map[string]string: an unquoted YAML boolean is refused by the API server.
        ("ScaledObject", "bga-mner-worker", ["spec", "triggers", 0, "metadata", "allowIdleConsumers"], False),
        ("ScaledObject", "bga-mner-worker", ["spec", "triggers", 0, "metadata", "consumerGroupName"], "x"),
        ("ScaledObject", "bga-mner-worker", ["spec", "triggers", 0, "metadata", "sasl"], "SCRAM-SHA-512"),
        ("TriggerAuthentication", "bga-mner-worker-kafka", ["spec", "secretTargetRef", 0, "secret"], "x"),
        ("ServiceMonitor", "bga-mner-worker", ["spec", "endpoints", 0, "interval"], "15 seconds"),
        ("ServiceMonitor", "bga-mner-worker", ["spec", "endpoint"], []),
        ("PrometheusRule", "bga-mner", ["spec", "groups", 0, "rules", 0, "for"], "10 minutes"),
        ("PrometheusRule", "bga-mner", ["spec", "groups", 0, "rules", 0, "annotation"], {}),
    ],
)
def test_a_broken_custom_resource_is_rejected(
    kind: str, name: str, path: list[str | int], value: Any
) -> None:
    manifest = _production(kind, name)
    _validate(manifest)
    with pytest.raises(jsonschema.ValidationError):
        _validate(_set(manifest, path, value))
