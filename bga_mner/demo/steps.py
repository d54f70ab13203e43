"""Numbered, timed steps on the console: what a person watching the demo needs to follow it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Steps:
    """Numbered, timed steps: what a person watching the demo needs to follow it."""

    console: Console
    total: int
    done: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        number = len(self.done) + 1
        self.console.rule(f"[bold][{number}/{self.total}] {title}")
        began = time.monotonic()
        yield
        seconds = time.monotonic() - began
        self.done.append((title, seconds))
        self.console.print(f"[green]done[/] {title} in {seconds:.1f} s")
