"""The Kubernetes manifests: schema-valid offline and consistent with each other.

Schema validity alone does not catch the mistakes that break a deployment (a Service selecting no pod,
a ServiceMonitor naming a port that does not exist, a grace period shorter than the worker's drain), so
the cross-references are checked on the rendered overlays as well. Custom resources are validated in
test_deploy_custom_resources.py, security in test_deploy_security.py, autoscaling in
test_deploy_autoscaling.py and the model-publishing Job in test_deploy_model_publish.py.
"""

from __future__ import annotations

import os
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import (
    DEPLOY,
    Manifest,
    all_containers,
    config_data,
    find,
    named,
    pod_spec,
    render_overlay,
    workloads,
)
from tests.deploy.crd_schemas import CUSTOM_GROUPS

# The oldest Kubernetes the manifests must still run on, and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Created out of band by the operator's secret manager, never committed (deploy/README.md says so).
EXTERNAL_SECRETS = {"bga-mner-worker-secrets"}


def _pod_labels(manifests: list[Manifest]) -> list[dict[str, str]]:
    return [m["spec"]["template"]["metadata"]["labels"] for m in workloads(manifests)]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_object_is_schema_valid(overlay: tuple[str, list[Manifest]], version: str) -> None:
    _, manifests = overlay
    builtin = [m for m in manifests if not m["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert len(builtin) >= 18
    for manifest in builtin:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_an_invalid_manifest_is_rejected() -> None:
    """The validator really checks: a Deployment with a string replica count fails."""
    manifests = render_overlay("dev")
    broken = find(manifests, "Deployment", "bga-mner-worker")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_services_select_pods_and_monitors_select_one_service(overlay: tuple[str, list[Manifest]]) -> None:
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
        # Exactly one: a second Service over the same pods (the headless one) would scrape them twice,
        # under a second job name the alerts do not know.
        assert len(selected) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(selected)}"
        port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names


def test_disruption_budgets_point_at_real_workloads(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    pods = _pod_labels(manifests)
    budgets = [m for m in manifests if m["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == 2
    for pdb in budgets:
        assert any(_selects(pdb["spec"]["selector"]["matchLabels"], labels) for labels in pods)


def test_volumes_and_config_references_resolve(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for workload in workloads(manifests):
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
        for container in all_containers(spec):
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])}, container["name"]
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source:
                    secret = source["secretRef"]
                    assert ("Secret", secret["name"]) in names or secret["name"] in EXTERNAL_SECRETS
                    # Production never starts without its credentials; dev has none to give.
                    assert secret.get("optional", False) == (name == "dev"), (name, secret)
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in config_data(manifests, ref["name"]), variable


def test_external_secrets_are_documented() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for secret in EXTERNAL_SECRETS:
        assert f"`{secret}`" in readme


def test_worker_drains_within_its_grace_period(overlay: tuple[str, list[Manifest]]) -> None:
    """terminationGracePeriodSeconds must cover preStop + the worker's drain grace, or the kubelet kills
    it mid-drain and the last batch is reprocessed after restart."""
    _, manifests = overlay
    worker = find(manifests, "Deployment", "bga-mner-worker")
    config = config_data(manifests, "bga-mner-worker")
    spec = pod_spec(worker)
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
    triton_spec = pod_spec(find(manifests, "Deployment", "bga-mner-triton"))
    triton = triton_spec["containers"][0]
    has_gpu = "nvidia.com/gpu" in triton["resources"].get("limits", {})
    assert has_gpu == (name == "production")
    assert ("--allow-gpu-metrics=true" in triton["args"]) == has_gpu
    job = pod_spec(find(manifests, "Job", "bga-mner-model-publish"))
    gpu_containers = [
        c["name"] for c in all_containers(job) if "nvidia.com/gpu" in c["resources"].get("limits", {})
    ]
    assert gpu_containers == (["build-plan"] if name == "production" else [])
    if name == "production":
        # The plan is built on the GPU type that serves it.
        assert job["nodeSelector"] == triton_spec["nodeSelector"]


def _yymm(image: str) -> str:
    match = re.search(r":(\d{2}\.\d{2})", image)
    assert match, image
    return match.group(1)


def test_tensorrt_build_uses_the_serving_triton_release() -> None:
    """A plan only loads in the TensorRT release that built it: the build container, the Triton image tag
    and the Triton Dockerfile must all name the same <yy.mm>."""
    manifests = render_overlay("production")
    triton_image = pod_spec(find(manifests, "Deployment", "bga-mner-triton"))["containers"][0]["image"]
    job = pod_spec(find(manifests, "Job", "bga-mner-model-publish"))
    build_image = next(c for c in job["initContainers"] if c["name"] == "build-plan")["image"]
    assert build_image.startswith("nvcr.io/nvidia/tensorrt:")
    dockerfile = (DEPLOY / "docker" / "triton.Dockerfile").read_text()
    match = re.search(r"ARG TRITON_VERSION=(\d{2}\.\d{2})", dockerfile)
    assert match
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3" in dockerfile
    assert _yymm(triton_image) == _yymm(build_image) == match.group(1)


def test_production_uses_managed_redis_with_a_storage_class() -> None:
    manifests = render_overlay("production")
    assert not [m for m in manifests if m["metadata"]["name"].startswith("bga-mner-redis")]
    config = config_data(manifests, "bga-mner-worker")
    assert config["BGA_REDIS__TLS"] == "true"
    claim = named(manifests, "PersistentVolumeClaim", "bga-mner-model-repository")
    assert claim["spec"]["storageClassName"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_redis_never_evicts_dedupe_markers() -> None:
    """Every key the sink writes has a TTL, so any volatile-* (or allkeys-*) policy may evict a dedupe
    marker and let a replay count a post twice; only noeviction is safe."""
    manifests = render_overlay("dev")
    args = pod_spec(find(manifests, "StatefulSet", "bga-mner-redis"))["containers"][0]["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in args
    text = (DEPLOY / "k8s" / "base" / "redis.yaml").read_text()
    assert "rebuilt by replay" not in text


def test_worker_image_is_torch_free() -> None:
    dockerfile = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    installs = re.findall(r"\.?\[([a-z,]+)\]", dockerfile)
    assert installs and all(extra == "worker" for extra in installs)
    assert "'torch' not in sys.modules" in dockerfile


def test_base_files_parse_as_yaml() -> None:
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), path


def _settings_from(config: dict[str, str], monkeypatch: pytest.MonkeyPatch, secrets: dict[str, str]) -> Any:
    from worker.settings import WorkerSettings

    for key in list(os.environ):
        if key.startswith("BGA_"):
            monkeypatch.delenv(key)
    for key, value in {**config, **secrets}.items():
        monkeypatch.setenv(key, value)
    return WorkerSettings()


def test_worker_config_is_what_the_worker_accepts(
    overlay: tuple[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ConfigMap key is a real setting (a typo would be silently ignored) and the values parse;
    the ports and paths the manifests use are the ones the worker will listen on and read."""
    name, manifests = overlay
    config = config_data(manifests, "bga-mner-worker")
    secrets = {}
    if name == "production":  # the Secret's part, created out of band
        secrets = {
            "BGA_KAFKA__SASL_USERNAME": "bga-mner-worker",
            "BGA_KAFKA__SASL_PASSWORD": "from-the-secret",
        }
    settings = _settings_from(config, monkeypatch, secrets)
    dumped = settings.model_dump()
    for key in config:
        path = key.removeprefix("BGA_").lower().split("__")
        node: Any = dumped
        for part in path:
            assert isinstance(node, dict) and part in node, f"{key} is not a worker setting"
            node = node[part]
    worker = find(manifests, "Deployment", "bga-mner-worker")
    container = pod_spec(worker)["containers"][0]
    assert container["ports"][0]["containerPort"] == settings.metrics_port
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.model_repository) in mounts
    # The workers spread their requests over every Triton pod: round robin over the headless Service.
    target = settings.triton.url.removeprefix("dns:///")
    assert target != settings.triton.url and settings.triton.load_balancing == "round_robin"
    host, port = target.rsplit(":", 1)
    triton = named(manifests, "Service", host)
    assert triton["spec"]["clusterIP"] == "None"
    assert int(port) in {p["port"] for p in triton["spec"]["ports"] if p["name"] == "grpc"}


def test_production_redis_fits_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production runs compact mode (docs/capacity.md): no records; markers outlive trending by a
    bucket and the clock-skew allowance."""
    manifests = render_overlay("production")
    secrets = {"BGA_KAFKA__SASL_USERNAME": "u", "BGA_KAFKA__SASL_PASSWORD": "p"}
    redis = _settings_from(config_data(manifests, "bga-mner-worker"), monkeypatch, secrets).redis
    assert redis.store_records is False
    assert redis.record_ttl_seconds == (
        redis.trending_ttl_seconds + redis.trending_bucket_seconds + redis.max_clock_skew_s
    )
