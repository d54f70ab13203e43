"""Pod security and network isolation, checked on the rendered overlays.

The namespaces enforce the Pod Security Standard `restricted`; a pod that breaks it is refused at
admission, which a cluster would only reveal at deploy time. The checks below follow the documented
`restricted` controls. The NetworkPolicies are evaluated as Kubernetes evaluates them (union of the
policies selecting a pod) on concrete peers: what must get through, and what must not.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    Manifest,
    all_containers,
    config_data,
    find,
    pod_spec,
    render_overlay,
    workloads,
)

_ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What in a pod spec the `restricted` Pod Security Standard forbids (empty: admitted)."""
    problems = [f"host namespace {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} of type {kinds}")
    pod_context = spec.get("securityContext", {})
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for container in all_containers(spec):
        name = container["name"]
        context = container.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation not false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds {capabilities['add']}")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot not set")
        if context.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def test_the_checker_catches_a_root_container() -> None:
    spec = pod_spec(find(render_overlay("dev"), "Deployment", "bga-mner-triton"))
    assert restricted_violations(spec) == []
    spec["containers"][0]["securityContext"] = {"runAsUser": 0}
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(spec)) >= 4


def test_namespaces_enforce_restricted_and_every_pod_meets_it(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    (namespace,) = [m for m in manifests if m["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    for workload in workloads(manifests):
        assert restricted_violations(pod_spec(workload)) == [], workload["metadata"]["name"]


def test_triton_and_the_plan_build_keep_the_ngc_entrypoint_as_non_root() -> None:
    """Setting `command` would bypass NGC's nvidia_entrypoint.sh (driver checks, CUDA forward compat)."""
    manifests = render_overlay("production")
    triton = pod_spec(find(manifests, "Deployment", "bga-mner-triton"))
    job = pod_spec(find(manifests, "Job", "bga-mner-model-publish"))
    build = next(c for c in job["initContainers"] if c["name"] == "build-plan")
    for spec, container in ((triton, triton["containers"][0]), (job, build)):
        assert "command" not in container and container["args"]
        assert spec["securityContext"]["runAsUser"] == 1000  # `triton-server` in the NGC images
    dockerfile = (DEPLOY / "docker" / "triton.Dockerfile").read_text()
    assert 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "tritonserver"]' in dockerfile
    assert re.search(r"^USER 1000", dockerfile, re.MULTILINE)


# ------------------------------------------------------------------------------------------------------
# NetworkPolicy evaluation


@dataclass(frozen=True)
class Peer:
    """A pod (namespace + labels) or an address outside the cluster, with the port it talks to."""

    port: int
    protocol: str = "TCP"
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "extend the evaluator for matchExpressions"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(c) for c in block.get("except", [])
        )
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not _matches(rule_peer["namespaceSelector"], _namespace_labels(peer.namespace)):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return _matches(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(ports: list[dict[str, Any]] | None, peer: Peer) -> bool:
    if not ports:
        return True
    return any(p.get("port") == peer.port and p.get("protocol", "TCP") == peer.protocol for p in ports)


def allowed(manifests: list[Manifest], pod: dict[str, str], direction: str, peer: Peer) -> bool:
    """Whether the policies let `pod` (labels, in the overlay's namespace) talk to or hear from `peer`."""
    policy_type, rules_key, peers_key = (
        ("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from")
    )
    selecting = [
        p
        for p in manifests
        if p["kind"] == "NetworkPolicy"
        and policy_type in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], pod)
    ]
    if not selecting:
        return True  # not isolated in that direction
    for policy in selecting:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(p, peer, namespace) for p in peers)) and _port_matches(
                rule.get("ports"), peer
            ):
                return True
    return False


WORKER = {"app.kubernetes.io/name": "bga-mner-worker", "app.kubernetes.io/component": "worker"}
TRITON = {"app.kubernetes.io/name": "bga-mner-triton", "app.kubernetes.io/component": "inference"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def _ports(servers: str) -> set[int]:
    return {int(server.rsplit(":", 1)[1]) for server in servers.split(",")}


def test_worker_egress_reaches_exactly_kafka_redis_triton_and_dns(
    overlay: tuple[str, list[Manifest]],
) -> None:
    name, manifests = overlay
    namespace = find(manifests, "Deployment", "bga-mner-worker")["metadata"]["namespace"]
    config = config_data(manifests, "bga-mner-worker")
    kafka_ports = _ports(config["BGA_KAFKA__BOOTSTRAP_SERVERS"])
    redis_port = int(config["BGA_REDIS__PORT"])
    triton_port = int(config["BGA_TRITON__URL"].rsplit(":", 1)[1])
    if name == "dev":  # in-cluster Kafka (namespace kafka) and Redis
        kafka = [Peer(port, namespace="kafka", labels={"app": "kafka"}) for port in kafka_ports]
        redis = Peer(redis_port, namespace=namespace, labels={"app.kubernetes.io/name": "bga-mner-redis"})
    else:  # managed services, by address
        kafka = [Peer(port, ip="10.20.3.4") for port in kafka_ports]
        redis = Peer(redis_port, ip="10.30.0.5")
    must = [
        *kafka,
        redis,
        Peer(triton_port, namespace=namespace, labels=TRITON),
        Peer(53, "UDP", namespace="kube-system", labels={"k8s-app": "kube-dns"}),
        Peer(53, "TCP", namespace="kube-system", labels={"k8s-app": "kube-dns"}),
    ]
    must_not = [
        Peer(8000, namespace=namespace, labels=TRITON),  # Triton's HTTP/model-control API
        Peer(443, ip="203.0.113.10"),  # the internet
        Peer(6379, namespace="other", labels={"app.kubernetes.io/name": "bga-mner-redis"}),
        Peer(53, "UDP", namespace="default", labels={"app": "dns-elsewhere"}),
        Peer(max(kafka_ports), ip="192.0.2.1") if name == "production" else Peer(9092, namespace="other"),
    ]
    for peer in must:
        assert allowed(manifests, WORKER, "egress", peer), peer
    for peer in must_not:
        assert not allowed(manifests, WORKER, "egress", peer), peer


def test_triton_and_worker_ingress(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    namespace = find(manifests, "Deployment", "bga-mner-triton")["metadata"]["namespace"]
    assert allowed(manifests, TRITON, "ingress", Peer(8001, namespace=namespace, labels=WORKER))
    assert allowed(manifests, TRITON, "ingress", Peer(8002, namespace="monitoring", labels=PROMETHEUS))
    assert not allowed(manifests, TRITON, "ingress", Peer(8001, namespace=namespace, labels={"app": "other"}))
    assert not allowed(manifests, TRITON, "ingress", Peer(8001, namespace="other", labels=WORKER))
    assert not allowed(manifests, TRITON, "ingress", Peer(8000, namespace=namespace, labels=WORKER))
    assert allowed(manifests, WORKER, "ingress", Peer(9108, namespace="monitoring", labels=PROMETHEUS))
    assert not allowed(manifests, WORKER, "ingress", Peer(9108, namespace=namespace, labels={"app": "x"}))


@pytest.mark.parametrize("name", ["dev", "production"])
def test_policies_select_the_pods_they_mean(name: str) -> None:
    """A policy whose podSelector matches no pod protects nothing."""
    manifests = render_overlay(name)
    pod_labels = [m["spec"]["template"]["metadata"]["labels"] for m in workloads(manifests)]
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    assert len(policies) == (5 if name == "dev" else 4)
    for policy in policies:
        assert any(_matches(policy["spec"]["podSelector"], labels) for labels in pod_labels), policy
