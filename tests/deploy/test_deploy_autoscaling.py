"""Worker autoscaling: exactly one autoscaler per overlay, nothing fighting it, and KEDA's Kafka trigger
looking at the very consumer group, topic and brokers the workers use.

A ScaledObject whose consumerGroup differs from BGA_KAFKA__GROUP_ID by one character scales on a group
nobody consumes with (lag only ever grows: the workers scale to max and stay there), which no schema
can catch; these cross-checks can.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import Manifest, config_data, find, named, pod_spec, render_overlay

# KEDA's `sasl` values for the worker's BGA_KAFKA__SASL_MECHANISM.
_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def test_nothing_pins_the_worker_replica_count(overlay: tuple[str, list[Manifest]]) -> None:
    """A `replicas:` field is re-applied by every `kubectl apply`, overriding the autoscaler (a rebalance)."""
    _, manifests = overlay
    assert "replicas" not in find(manifests, "Deployment", "bga-mner-worker")["spec"]


def test_exactly_one_autoscaler_owns_the_workers(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    targets = [
        m["spec"]["scaleTargetRef"]["name"]
        for m in manifests
        if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert targets == ["bga-mner-worker"]
    kind = "ScaledObject" if name == "production" else "HorizontalPodAutoscaler"
    assert [m["kind"] for m in manifests if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")] == [
        kind
    ]


def test_dev_hpa_needs_no_adapter() -> None:
    hpa = find(render_overlay("dev"), "HorizontalPodAutoscaler", "bga-mner-worker")
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def _kafka_trigger(scaled: Manifest) -> dict[str, Any]:
    triggers: list[dict[str, Any]] = scaled["spec"]["triggers"]
    assert len(triggers) == 1, "lag is the one signal: no second trigger to disagree with"
    assert triggers[0]["type"] == "kafka"
    return triggers[0]


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render_overlay("production")


def test_scaled_object_watches_the_workers_group_topic_and_brokers(
    production: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.settings import KafkaSettings

    config = config_data(production, "bga-mner-worker")
    scaled = find(production, "ScaledObject", "bga-mner-worker")
    metadata = _kafka_trigger(scaled)["metadata"]
    assert metadata["bootstrapServers"] == config["BGA_KAFKA__BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == config.get("BGA_KAFKA__GROUP_ID", KafkaSettings().group_id)
    topics = config.get("BGA_KAFKA__TOPICS", ",".join(KafkaSettings().topics)).split(",")
    assert [metadata["topic"]] == topics, "one ScaledObject trigger per topic"
    reset = config.get("BGA_KAFKA__AUTO_OFFSET_RESET", KafkaSettings().auto_offset_reset)
    assert metadata["offsetResetPolicy"] == reset
    protocol = config["BGA_KAFKA__SECURITY_PROTOCOL"]
    assert metadata.get("tls", "disable") == ("enable" if protocol in ("SSL", "SASL_SSL") else "disable")
    assert metadata.get("sasl", "none") == _SASL.get(config.get("BGA_KAFKA__SASL_MECHANISM", ""), "none")


def test_scaled_object_caps_replicas_at_the_partition_count(production: list[Manifest]) -> None:
    scaled = find(production, "ScaledObject", "bga-mner-worker")
    spec = scaled["spec"]
    partitions = int(scaled["metadata"]["annotations"]["bga-mner.io/topic-partitions"])
    assert spec["maxReplicaCount"] == partitions
    metadata = _kafka_trigger(scaled)["metadata"]
    assert metadata["allowIdleConsumers"] == "false"
    # Never to zero: the absent-style alerts and the dashboards assume a worker exists.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert int(metadata["lagThreshold"]) > 0
    assert (
        spec["scaleTargetRef"]["name"]
        == find(production, "Deployment", "bga-mner-worker")["metadata"]["name"]
    )
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300  # every scale-down is a rebalance


def test_scaler_uses_the_workers_own_credentials(production: list[Manifest]) -> None:
    """KEDA logs in with the worker's Secret, under keys the worker reads as settings."""
    from worker.settings import KafkaSettings

    scaled = find(production, "ScaledObject", "bga-mner-worker")
    auth = named(production, "TriggerAuthentication", _kafka_trigger(scaled)["authenticationRef"]["name"])
    worker = pod_spec(find(production, "Deployment", "bga-mner-worker"))["containers"][0]
    (secret,) = [s["secretRef"]["name"] for s in worker["envFrom"] if "secretRef" in s]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    kafka_fields = KafkaSettings.model_fields
    for parameter, ref in refs.items():
        assert ref["name"] == secret
        assert ref["key"] == f"BGA_KAFKA__SASL_{parameter.upper()}"
        assert f"sasl_{parameter}" in kafka_fields
