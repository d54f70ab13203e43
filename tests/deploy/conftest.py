"""Fixtures for the deployment tests: rendered kustomize overlays, as lists of manifests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "production")

Manifest = dict[str, Any]


def render_overlay(name: str) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name = str(request.param)
    return name, render_overlay(name)


def find(manifests: list[Manifest], kind: str, name_prefix: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)]
    assert len(matches) == 1, f"expected one {kind} {name_prefix}*, found {len(matches)}"
    return matches[0]
