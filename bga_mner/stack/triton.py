"""NVIDIA Triton Inference Server on CPU, from the `nvidia-pytriton` wheel (python backend only).

The wheel ships `tritonserver` and one python-backend stub per Python version; Triton expects the
stub next to the backend library, so `prepare` assembles a backend directory inside the state
directory (the installed wheel is never modified). Models bring their own Python environment
through the EXECUTION_ENV_PATH parameter (see model_repo/python_backend/README.md); the server's
own environment is scrubbed of the caller's venv so a model that forgets it fails here as it would
in production, instead of silently borrowing the venv.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from bga_mner.stack.service import Service, StackError

TRITON_DIR_ENV = "BGA_TRITONSERVER_DIR"
ModelControl = Literal["explicit", "poll", "none"]
MODEL_CONTROL_MODES: tuple[ModelControl, ...] = ("explicit", "poll", "none")


def tritonserver_dir() -> Path:
    """The `tritonserver` folder of the installed nvidia-pytriton wheel (found without importing it)."""
    configured = os.environ.get(TRITON_DIR_ENV)
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "Triton needs the `nvidia-pytriton` wheel: run scripts/bootstrap.sh "
            "(pip install --no-deps nvidia-pytriton==0.7.0), or set BGA_TRITONSERVER_DIR"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


class TritonServer(Service):
    """Triton with gRPC, HTTP and metrics endpoints.

    ``model_control="explicit"`` (the default) loads every model in the repository at start and
    lets clients load and unload models later (tests serve their own models on one server).
    """

    name = "triton"
    port_names = ("grpc", "http", "metrics")

    def __init__(self, model_repository: Path, model_control: ModelControl = "explicit") -> None:
        if model_control not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control must be one of {MODEL_CONTROL_MODES}, got {model_control!r}")
        self.model_repository = model_repository.resolve()
        self.model_control: ModelControl = model_control

    def _backends(self, state_dir: Path) -> Path:
        return (state_dir / "triton" / "backends").resolve()

    def prepare(self, state_dir: Path) -> None:
        server = tritonserver_dir()
        binary = server / "bin" / "tritonserver"
        if not binary.is_file():
            raise StackError(f"no tritonserver binary at {binary}")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise StackError(f"nvidia-pytriton has no python-backend stub for Python {version} ({stub})")
        python_backend = self._backends(state_dir) / "python"
        python_backend.mkdir(parents=True, exist_ok=True)
        for source in (p for p in (server / "backends" / "python").iterdir() if p.is_file()):
            target = python_backend / source.name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                shutil.copy2(source, target)
        # The stub finds its bundled libraries (libcudart) through an $ORIGIN-relative RPATH, which
        # the kernel resolves from the real path: a symlink keeps it valid, a copy would not.
        link = python_backend / stub.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(stub)
        self.model_repository.mkdir(parents=True, exist_ok=True)

    def argv(self, ports: Mapping[str, int], state_dir: Path) -> list[str]:
        argv = [
            str(tritonserver_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self._backends(state_dir)}",
            f"--grpc-address={self.host}",
            f"--grpc-port={ports['grpc']}",
            f"--http-address={self.host}",
            f"--http-port={ports['http']}",
            f"--metrics-address={self.host}",
            f"--metrics-port={ports['metrics']}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            # One shared-memory name space per server: two stacks on one machine must not collide.
            f"--backend-config=python,shm-region-prefix-name=bga_mner_{ports['http']}_",
            f"--model-control-mode={self.model_control}",
        ]
        if self.model_control == "explicit":
            argv.append("--load-model=*")
        return argv

    def environment(self) -> dict[str, str]:
        """The caller's environment without its virtualenv (see the module docstring)."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        if sys.prefix != sys.base_prefix:
            venv = str(Path(sys.prefix).resolve())
            keep = [
                p
                for p in env.get("PATH", "").split(os.pathsep)
                if not str(Path(p).resolve()).startswith(venv)
            ]
            env["PATH"] = os.pathsep.join(keep)
        return env

    def probe(self, ports: Mapping[str, int]) -> bool:
        url = f"http://{self.host}:{ports['http']}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def failure_reason(self, log_text: str) -> str | None:
        """Triton's own reason when a model failed to load, e.g. ``failed to load 'bga_mner' version 1:
        Internal: ModuleNotFoundError: No module named 'numpy'`` (the server then exits). Triton logs
        the reason as a quoted string with an escaped traceback after it: the first line is kept."""
        failures = []
        for line in log_text.splitlines():
            if "failed to load '" in line and " version " in line:
                reason = line[line.index("failed to load") :].split("\\n", 1)[0].strip().strip('"')
                if reason not in failures:
                    failures.append(reason)
        return "; ".join(failures) if failures else super().failure_reason(log_text)

    def endpoints(self, ports: Mapping[str, int]) -> dict[str, str]:
        grpc = f"{self.host}:{ports['grpc']}"
        return {
            "BGA_TRITON_GRPC": grpc,
            "BGA_TRITON__URL": grpc,
            "BGA_TRITON_HTTP": f"{self.host}:{ports['http']}",
            "BGA_TRITON_METRICS": f"http://{self.host}:{ports['metrics']}/metrics",
        }

    def settings(self) -> dict[str, str]:
        return {"model_repository": str(self.model_repository), "model_control": self.model_control}
