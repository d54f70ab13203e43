"""Fixtures for the deployment tests: rendered kustomize overlays, as lists of manifests."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "production")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")

Manifest = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed: scripts/install_test_tools.sh")
    return path


@functools.cache
def _render(name: str, kubectl_path: str) -> str:
    result = subprocess.run(
        [kubectl_path, "kustomize", str(DEPLOY / "k8s" / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render_overlay(name: str) -> list[Manifest]:
    """The overlay as `kubectl kustomize` renders it (rendered once per session, fresh dicts per call)."""
    return [doc for doc in yaml.safe_load_all(_render(name, kubectl())) if doc]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name = str(request.param)
    return name, render_overlay(name)


def find(manifests: list[Manifest], kind: str, name_prefix: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)]
    assert len(matches) == 1, f"expected one {kind} {name_prefix}*, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers and containers of a pod spec."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def config_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    data: dict[str, str] = find(manifests, "ConfigMap", name)["data"]
    return data


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of that kind with exactly that name."""
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]
