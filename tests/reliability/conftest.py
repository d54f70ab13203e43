"""Fixtures of the fault-injection suite, and the figures it reports.

Every test records its figures (posts sent, stored, lost, duplicated, recovery times, RSS) with
``figures.record(name, **values)``; they are printed at the end of the run and, when
``BGA_RELIABILITY_FIGURES`` names a file, written there as JSON (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.worker_support import serve_tiny_model
from tests.reliability.harness import ProxiedBroker

_FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


class Figures:
    def __init__(self, store: dict[str, dict[str, Any]]) -> None:
        self._store = store

    def record(self, name: str, **values: Any) -> None:
        self._store.setdefault(name, {}).update(values)
        print(f"\nFIGURES {name}: {json.dumps(values, sort_keys=True)}")


@pytest.fixture
def figures(pytestconfig: pytest.Config) -> Figures:
    return Figures(pytestconfig.stash.setdefault(_FIGURES, {}))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    collected = config.stash.get(_FIGURES, {})
    if not collected:
        return
    terminalreporter.section("reliability figures")
    for name, values in collected.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values, sort_keys=True)}")
    target = os.environ.get("BGA_RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(collected, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedBroker]:
    """A broker of the module's own behind a proxy; the dead-letter producer's connections (its client
    id is in the first request) are the only ones ``proxy.set_mode`` affects when ``selector`` is set."""
    broker = ProxiedBroker(tmp_path_factory.mktemp("broker"))
    yield broker
    broker.close()


@pytest.fixture
def tiny_model(load_triton_model: Callable[..., str], tmp_path: Path) -> tuple[Path, str]:
    return serve_tiny_model(load_triton_model, tmp_path / "repository", prefix="rel")
