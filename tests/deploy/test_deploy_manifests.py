"""The Kubernetes manifests: schema-valid offline and consistent with each other.

Schema validity alone does not catch the mistakes that break a deployment (a Service selecting no pod,
a ServiceMonitor naming a port that does not exist, a grace period shorter than the worker's drain), so
the cross-references are checked on the rendered overlays as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, Manifest, find, render_overlay

# The oldest Kubernetes the manifests must still run on, and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/",)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def _pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _pod_labels(manifests: list[Manifest]) -> list[dict[str, str]]:
    return [m["spec"]["template"]["metadata"]["labels"] for m in manifests if m["kind"] in WORKLOAD_KINDS]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_object_is_schema_valid(overlay: tuple[str, list[Manifest]], version: str) -> None:
    _, manifests = overlay
    builtin = [m for m in manifests if not m["apiVersion"].startswith(CRD_GROUPS)]
    assert len(builtin) >= 10
    for manifest in builtin:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_an_invalid_manifest_is_rejected() -> None:
    """The validator really checks: a Deployment with a string replica count fails."""
    manifests = render_overlay("dev")
    broken = find(manifests, "Deployment", "bga-mner-worker")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_services_select_pods_and_monitors_select_services(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    pods = _pod_labels(manifests)
    services = [m for m in manifests if m["kind"] == "Service"]
    for service in services:
        assert any(_selects(service["spec"]["selector"], labels) for labels in pods), service["metadata"][
            "name"
        ]
    for monitor in (m for m in manifests if m["kind"] == "ServiceMonitor"):
        selected = [
            s
            for s in services
            if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert selected, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        port_names = {p["name"] for s in selected for p in s["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names


def test_disruption_budgets_and_autoscaler_point_at_real_workloads(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    pods = _pod_labels(manifests)
    for pdb in (m for m in manifests if m["kind"] == "PodDisruptionBudget"):
        assert any(_selects(pdb["spec"]["selector"]["matchLabels"], labels) for labels in pods)
    hpa = find(manifests, "HorizontalPodAutoscaler", "bga-mner-worker")
    target = hpa["spec"]["scaleTargetRef"]
    find(manifests, target["kind"], target["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_volumes_and_config_references_resolve(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for workload in (m for m in manifests if m["kind"] in WORKLOAD_KINDS):
        spec = _pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source and not source["secretRef"].get("optional", False):
                    assert ("Secret", source["secretRef"]["name"]) in names


def test_worker_drains_within_its_grace_period(overlay: tuple[str, list[Manifest]]) -> None:
    """terminationGracePeriodSeconds must cover preStop + the worker's drain grace, or the kubelet kills
    it mid-drain and the last batch is reprocessed after restart."""
    _, manifests = overlay
    worker = find(manifests, "Deployment", "bga-mner-worker")
    config = find(manifests, "ConfigMap", "bga-mner-worker")["data"]
    spec = _pod_spec(worker)
    container = spec["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(config["BGA_SHUTDOWN_GRACE_S"])
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + 5
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert not any("nvidia.com/gpu" in r for r in container["resources"].values())


def test_gpu_only_where_intended(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    triton = _pod_spec(find(manifests, "Deployment", "bga-mner-triton"))["containers"][0]
    has_gpu = "nvidia.com/gpu" in triton["resources"].get("limits", {})
    assert has_gpu == (name == "production")
    jobs = [m for m in manifests if m["kind"] == "Job"]
    if name == "production":
        job = find(manifests, "Job", "bga-mner-tensorrt-build")
        assert "nvidia.com/gpu" in _pod_spec(job)["containers"][0]["resources"]["limits"]
        # The plan is built on the GPU type that serves it.
        assert (
            _pod_spec(job)["nodeSelector"]
            == _pod_spec(find(manifests, "Deployment", "bga-mner-triton"))["nodeSelector"]
        )
    else:
        assert jobs == []


def _yymm(image: str) -> str:
    match = re.search(r":(\d{2}\.\d{2})", image)
    assert match, image
    return match.group(1)


def test_tensorrt_build_uses_the_serving_triton_release() -> None:
    """A plan only loads in the TensorRT release that built it: the build Job's TensorRT container, the
    Triton image tag and the Triton Dockerfile must all name the same <yy.mm>."""
    manifests = render_overlay("production")
    triton_image = _pod_spec(find(manifests, "Deployment", "bga-mner-triton"))["containers"][0]["image"]
    build_image = _pod_spec(find(manifests, "Job", "bga-mner-tensorrt-build"))["containers"][0]["image"]
    assert build_image.startswith("nvcr.io/nvidia/tensorrt:")
    dockerfile = (DEPLOY / "docker" / "triton.Dockerfile").read_text()
    match = re.search(r"ARG TRITON_VERSION=(\d{2}\.\d{2})", dockerfile)
    assert match
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3" in dockerfile
    assert _yymm(triton_image) == _yymm(build_image) == match.group(1)


def test_production_uses_managed_redis_and_scales_on_lag() -> None:
    manifests = render_overlay("production")
    assert not [m for m in manifests if m["metadata"]["name"].startswith("bga-mner-redis")]
    config = find(manifests, "ConfigMap", "bga-mner-worker")["data"]
    assert config["BGA_REDIS__TLS"] == "true"
    hpa = find(manifests, "HorizontalPodAutoscaler", "bga-mner-worker")
    external = [m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    assert external == ["bga_mner_consumer_lag"]


def test_worker_image_is_torch_free() -> None:
    dockerfile = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    installs = re.findall(r"\.?\[([a-z,]+)\]", dockerfile)
    assert installs and all(extra == "worker" for extra in installs)
    assert "'torch' not in sys.modules" in dockerfile


def test_build_job_ships_the_committed_script() -> None:
    manifests = render_overlay("production")
    config_map = find(manifests, "ConfigMap", "bga-mner-tensorrt-build")
    script = Path(DEPLOY / "tensorrt" / "build_plan.sh").read_text()
    assert config_map["data"]["build_plan.sh"] == script
    job = _pod_spec(find(manifests, "Job", "bga-mner-tensorrt-build"))
    assert job["containers"][0]["command"][:2] == ["bash", "/scripts/build_plan.sh"]


def test_base_files_parse_as_yaml() -> None:
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), path


def test_worker_config_is_what_the_worker_accepts(
    overlay: tuple[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ConfigMap key is a real setting (a typo would be silently ignored) and the values parse;
    the ports and paths the manifests use are the ones the worker will listen on and read."""
    from worker.settings import WorkerSettings

    name, manifests = overlay
    config = find(manifests, "ConfigMap", "bga-mner-worker")["data"]
    for key in list(os.environ):
        if key.startswith("BGA_"):
            monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    if name == "production":  # the Secret's part, created out of band
        monkeypatch.setenv("BGA_KAFKA__SASL_PASSWORD", "from-the-secret")
    settings = WorkerSettings()
    dumped = settings.model_dump()
    for key in config:
        path = key.removeprefix("BGA_").lower().split("__")
        node: Any = dumped
        for part in path:
            assert isinstance(node, dict) and part in node, f"{key} is not a worker setting"
            node = node[part]
    worker = find(manifests, "Deployment", "bga-mner-worker")
    container = _pod_spec(worker)["containers"][0]
    assert container["ports"][0]["containerPort"] == settings.metrics_port
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.model_repository) in mounts
    triton = find(manifests, "Service", "bga-mner-triton")
    host, port = settings.triton.url.rsplit(":", 1)
    assert host == triton["metadata"]["name"]
    assert int(port) in {p["port"] for p in triton["spec"]["ports"] if p["name"] == "grpc"}
