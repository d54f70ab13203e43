"""Serving a model directory on a running Triton in explicit model-control mode (tests, the demo).

Triton requires a model's directory name to equal the ``name:`` in its config.pbtxt, so a copy
under a new name has that line rewritten; everything else (weights, model.py, an environment
symlink for EXECUTION_ENV_PATH) is copied as it is, symlinks kept as symlinks.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from bga_mner.stack.process import log_tail
from bga_mner.stack.service import StackError

_NAME_LINE = re.compile(r'^name\s*:\s*"[^"]*"\s*$', re.MULTILINE)


def _free_name(repository: Path, wanted: str) -> str:
    name, n = wanted, 1
    while (repository / name).exists():
        n += 1
        name = f"{wanted}_{n}"
    return name


def copy_model(src: Path, repository: Path, name: str | None = None) -> str:
    """Copy ``src`` into ``repository`` under a name not taken yet; returns that name."""
    if not (src / "config.pbtxt").is_file():
        raise StackError(f"{src} is not a Triton model directory (no config.pbtxt)")
    name = _free_name(repository, name or src.name)
    target = repository / name
    shutil.copytree(src, target, symlinks=True)
    config = target / "config.pbtxt"
    text = config.read_text(encoding="utf-8")
    if _NAME_LINE.search(text):
        config.write_text(_NAME_LINE.sub(f'name: "{name}"', text, count=1), encoding="utf-8")
    return name


def load_model(
    grpc_url: str,
    repository: Path,
    src: Path,
    name: str | None = None,
    timeout: float = 120.0,
    server_log: Path | None = None,
) -> str:
    """Copy ``src`` into the served repository and load it through Triton's gRPC API.

    Returns the name it is served under once Triton reports it ready; a failed load raises
    StackError with Triton's reason (e.g. the python backend's traceback from `initialize`).
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    served = copy_model(src, repository, name)
    client = grpcclient.InferenceServerClient(url=grpc_url)
    try:
        try:
            client.load_model(served, client_timeout=timeout)
        except InferenceServerException as exc:
            tail = f"\n--- last lines of {server_log} ---\n{log_tail(server_log)}" if server_log else ""
            raise StackError(f"Triton could not load {served!r} from {src}: {exc.message()}{tail}") from exc
        deadline = time.monotonic() + timeout
        while not client.is_model_ready(served):
            if time.monotonic() > deadline:
                raise StackError(f"{served!r} loaded but not ready after {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        client.close()
    return served
