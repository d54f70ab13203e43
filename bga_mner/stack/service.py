"""What every local service (broker, Redis, Triton) tells the stack: how to start it and when it is ready."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from bga_mner.errors import BgaMnerError
from bga_mner.stack.ports import LOOPBACK


class StackError(BgaMnerError):
    """A service could not be found, started or made ready; the message says what to do."""


class Service(abc.ABC):
    """One server process of the local stack.

    Subclasses name the ports they need; the stack picks free ones, starts ``argv``, and polls
    ``probe`` until it answers with a real protocol request, not just an open socket.
    """

    name: ClassVar[str]
    port_names: ClassVar[tuple[str, ...]]
    host: ClassVar[str] = LOOPBACK

    def prepare(self, state_dir: Path) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Create whatever the process needs on disk before it starts."""

    @abc.abstractmethod
    def argv(self, ports: Mapping[str, int], state_dir: Path) -> list[str]:
        """The command line."""

    @abc.abstractmethod
    def probe(self, ports: Mapping[str, int]) -> bool:
        """One readiness check: True once the service answers requests; False (not raise) until then."""

    @abc.abstractmethod
    def endpoints(self, ports: Mapping[str, int]) -> dict[str, str]:
        """Environment variable name -> value that a client (the worker, a test) connects with."""

    def environment(self) -> dict[str, str] | None:
        """The process environment; None inherits the caller's."""
        return None

    def failure_reason(self, log_text: str) -> str | None:
        """The one line of a failed start's log that says why, when the service's log format tells."""
        lines = [line.strip() for line in log_text.splitlines() if line.strip()]
        return lines[-1] if lines else None

    def settings(self) -> dict[str, str]:
        """Options worth recording in the state file (compared when `up` finds it running)."""
        return {}
