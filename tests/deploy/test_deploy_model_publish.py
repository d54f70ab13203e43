"""deploy/model/publish_model.sh run for real, the publishing Job's wiring, and the version pins.

The rollout procedure (docs/operations.md, "Model rollout") rests on three facts tested here: a version is
copied onto the volume atomically and never silently replaced; the config the script writes makes a real
Triton serve exactly the listed versions side by side; and the manifests keep the workers' pinned version
among the served ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    Manifest,
    all_containers,
    config_data,
    find,
    pod_spec,
)

SCRIPT = DEPLOY / "model" / "publish_model.sh"
POLICY = "version_policy: { latest: { num_versions: 1 } }"


def _exported(root: Path, version: int, platform: str = "onnxruntime_onnx", marker: str = "") -> Path:
    """A repository as `bga-mner export` lays it out (one version), small stand-in files."""
    model = root / "bga_mner"
    (model / str(version)).mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        f'name: "bga_mner"\nplatform: "{platform}"\n{POLICY}\nmax_batch_size: 64\n'
    )
    (model / str(version) / "manifest.json").write_text(json.dumps({"model_version": version, "m": marker}))
    (model / str(version) / "model.onnx").write_bytes(b"onnx")
    return root


def _run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX sh")
    return subprocess.run(
        [sh, str(SCRIPT), *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_publishes_versions_side_by_side_and_serves_exactly_the_listed_ones(tmp_path: Path) -> None:
    dest = tmp_path / "volume"
    first = _run("copy", _exported(tmp_path / "v1", 1), dest, PUBLISH_VERSION="1")
    assert first.returncode == 0, first.stderr
    assert not (dest / "bga_mner" / "config.pbtxt").exists(), "copy never touches the live config"
    assert _run("serve", dest, SERVE_VERSIONS="1").returncode == 0
    assert _run("copy", _exported(tmp_path / "v2", 2), dest, PUBLISH_VERSION="2").returncode == 0
    served = _run("serve", dest, SERVE_VERSIONS="1,2")
    assert served.returncode == 0, served.stderr
    config = (dest / "bga_mner" / "config.pbtxt").read_text()
    assert "version_policy: { specific: { versions: [ 1, 2 ] } }" in config
    assert POLICY not in config and 'platform: "onnxruntime_onnx"' in config
    assert sorted(p.name for p in (dest / "bga_mner").iterdir()) == ["1", "2", "config.pbtxt"]


def test_the_warm_up_inputs_are_published_with_their_version(tmp_path: Path) -> None:
    """config.pbtxt names warm-up files under <model>/warmup/: `serve` puts the newest version's in place."""
    source = _exported(tmp_path / "v1", 1, platform="tensorrt_plan")
    (source / "bga_mner" / "warmup").mkdir()
    (source / "bga_mner" / "warmup" / "input_ids_16").write_bytes(b"v1 warm-up")
    (source / "bga_mner" / "1" / "model.plan").write_bytes(b"plan")
    dest = tmp_path / "volume"
    assert _run("copy", source, dest, PUBLISH_VERSION="1").returncode == 0
    assert not (dest / "bga_mner" / "warmup").exists(), "copy never touches what Triton serves"
    served = _run("serve", dest, SERVE_VERSIONS="1")
    assert served.returncode == 0, served.stderr
    assert (dest / "bga_mner" / "warmup" / "input_ids_16").read_bytes() == b"v1 warm-up"


def test_copy_is_idempotent_and_never_replaces_a_different_model(tmp_path: Path) -> None:
    dest = tmp_path / "volume"
    assert _run("copy", _exported(tmp_path / "a", 1, marker="a"), dest, PUBLISH_VERSION="1").returncode == 0
    again = _run("copy", _exported(tmp_path / "a2", 1, marker="a"), dest, PUBLISH_VERSION="1")
    assert again.returncode == 0 and "already published" in again.stdout
    other = _exported(tmp_path / "b", 1, marker="b")
    refused = _run("copy", other, dest, PUBLISH_VERSION="1")
    assert refused.returncode == 2 and "differs" in refused.stderr
    assert json.loads((dest / "bga_mner" / "1" / "manifest.json").read_text())["m"] == "a"
    forced = _run("copy", other, dest, PUBLISH_VERSION="1", FORCE="1")
    assert forced.returncode == 0
    assert json.loads((dest / "bga_mner" / "1" / "manifest.json").read_text())["m"] == "b"
    assert [p.name for p in (dest / "bga_mner").iterdir()] == ["1"], "no staging leftovers"


def test_serve_refuses_a_tensorrt_version_without_its_plan(tmp_path: Path) -> None:
    dest = tmp_path / "volume"
    assert (
        _run(
            "copy", _exported(tmp_path / "src", 3, platform="tensorrt_plan"), dest, PUBLISH_VERSION="3"
        ).returncode
        == 0
    )
    refused = _run("serve", dest, SERVE_VERSIONS="3")
    assert refused.returncode == 2 and "model.plan" in refused.stderr
    assert not (dest / "bga_mner" / "config.pbtxt").exists()
    (dest / "bga_mner" / "3" / "model.plan").write_bytes(b"plan")
    assert _run("serve", dest, SERVE_VERSIONS="3").returncode == 0
    unpublished = _run("serve", dest, SERVE_VERSIONS="3,4")
    assert unpublished.returncode == 2 and "not published" in unpublished.stderr


@pytest.mark.parametrize("version", ["", "v2", "1.0"])
def test_copy_refuses_a_bad_version(tmp_path: Path, version: str) -> None:
    result = _run("copy", _exported(tmp_path / "src", 1), tmp_path / "volume", PUBLISH_VERSION=version)
    assert result.returncode != 0
    assert not (tmp_path / "volume" / "bga_mner" / "1").exists()


# ------------------------------------------------------------------------------------------------------
# The Job and the pins in the rendered overlays


def _release(manifests: list[Manifest]) -> dict[str, str]:
    return config_data(manifests, "bga-mner-model-release")


def test_pinned_worker_version_is_served_and_the_image_is_the_published_version(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    release = _release(manifests)
    served = release["SERVE_VERSIONS"].split(",")
    worker_version = config_data(manifests, "bga-mner-worker")["BGA_TRITON__MODEL_VERSION"]
    assert worker_version in served, "workers pinned to a version Triton does not serve refuse to start"
    assert release["PUBLISH_VERSION"] in served
    assert release["MODEL_NAME"] == config_data(manifests, "bga-mner-worker")["BGA_TRITON__MODEL_NAME"]
    job = pod_spec(find(manifests, "Job", "bga-mner-model-publish"))
    images = {c["image"] for c in all_containers(job) if "model-repository" in c["image"]}
    assert images == {f"ghcr.io/bga-mner/model-repository:{release['PUBLISH_VERSION']}"}


def test_the_job_copies_then_builds_then_serves(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    job = pod_spec(find(manifests, "Job", "bga-mner-model-publish"))
    steps = [c["name"] for c in all_containers(job)]
    assert steps == (["copy", "build-plan", "serve"] if name == "production" else ["copy", "serve"])
    scripts = {
        v["name"]: find(manifests, "ConfigMap", v["configMap"]["name"])["data"]
        for v in job["volumes"]
        if "configMap" in v
    }
    assert scripts["publish-script"]["publish_model.sh"] == SCRIPT.read_text()
    copy, serve = job["initContainers"][0], job["containers"][0]
    assert copy["command"][-3:] == ["copy", "/model_repository", "/models"]
    assert serve["command"][-2:] == ["serve", "/models"]
    if name == "production":
        build = job["initContainers"][1]
        assert (
            scripts["tensorrt-script"]["build_plan.sh"] == (DEPLOY / "tensorrt" / "build_plan.sh").read_text()
        )
        assert build["args"][:2] == ["bash", "/scripts/tensorrt/build_plan.sh"]
        # It builds the version just copied: $(VAR) references resolve from the container's own env.
        assert build["args"][2:] == ["/models", "$(MODEL_NAME)", "$(PUBLISH_VERSION)"]
        assert {e["name"] for e in build["env"]} >= {"MODEL_NAME", "PUBLISH_VERSION"}


# ------------------------------------------------------------------------------------------------------
# A real Triton serving what the script published


def _as_version(exported: Path, version: int, dest_root: Path) -> Path:
    """The tiny repository re-exported under another version number (same weights)."""
    model = dest_root / "bga_mner"
    model.mkdir(parents=True)
    shutil.copy(exported / "bga_mner" / "config.pbtxt", model / "config.pbtxt")
    shutil.copytree(exported / "bga_mner" / "1", model / str(version))
    manifest_path = model / str(version) / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    manifest["model_version"] = version
    manifest_path.write_text(json.dumps(manifest))
    return dest_root


@pytest.mark.timeout(300)
def test_triton_serves_both_published_versions(
    tiny_model_repository: Path,
    load_triton_model: Callable[..., str],
    local_stack: Any,
    tmp_path: Path,
) -> None:
    """What step 3 of the rollout relies on: after `serve` with "1,2", Triton has both versions ready."""
    import tritonclient.grpc as grpcclient

    dest = tmp_path / "volume"
    assert _run("copy", tiny_model_repository, dest, PUBLISH_VERSION="1").returncode == 0
    published = _run(
        "copy", _as_version(tiny_model_repository, 2, tmp_path / "v2"), dest, PUBLISH_VERSION="2"
    )
    assert published.returncode == 0, published.stderr
    served = _run("serve", dest, SERVE_VERSIONS="1,2")
    assert served.returncode == 0, served.stderr
    # The python backend's environment (the NGC image has it system-wide; here it is the test venv).
    (dest / "bga_mner" / "python_env").symlink_to(
        (tiny_model_repository / "bga_mner" / "python_env").resolve()
    )
    name = load_triton_model(dest / "bga_mner", name="bga_mner_publish_probe")
    client = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    try:
        assert client.is_model_ready(name, "1")
        assert client.is_model_ready(name, "2")
        config = client.get_model_config(name, as_json=True)["config"]
        assert sorted(config["version_policy"]["specific"]["versions"]) == ["1", "2"]
    finally:
        client.unload_model(name)
        client.close()
