"""The error taxonomy: every error the project raises on purpose is one of four kinds.

A component says *what kind* of failure it met by the class it raises; whoever catches it (the
stream loop, the CLI) acts on the kind alone, never on a list of concrete classes:

- ``TransientError``: a dependency is unavailable right now (Triton, Redis, the broker). The same
  work may succeed later, so it is retried with backoff and never skipped or committed past.
- ``RejectedError``: a dependency refused the work in a way no retry can fix, or the deployment is
  inconsistent (a model that disagrees with its manifest, a Redis key of the wrong type). Retrying
  would spin, and skipping would lose data, so the worker stops with the reason.
- ``InvalidInput``: one input can never succeed (not JSON, an undecodable image, an oversized
  post). It is dead-lettered with its ``reason`` and the stream goes on.
- ``ConfigurationError``: the program cannot start as configured (settings, files, a missing extra).
  Commands exit 2 with one line that says what to change.

Packages add their own base (``worker.errors.WorkerError``, ...) beside these kinds so that a
caller can also tell *where* an error came from; the kind decides what happens.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIGURATION",
    "EXIT_FAILURE",
    "BgaMnerError",
    "ConfigurationError",
    "InvalidInput",
    "MissingExtra",
    "RejectedError",
    "TransientError",
]

EXIT_FAILURE = 1
EXIT_CONFIGURATION = 2


class BgaMnerError(Exception):
    """Base of every error the project raises on purpose; ``exit_code`` is what a command returns."""

    exit_code = EXIT_FAILURE


class TransientError(BgaMnerError):
    """A dependency is unavailable now; retrying the same work later may succeed. Never commit past it."""


class RejectedError(BgaMnerError):
    """A dependency refused the work permanently, or the deployment is inconsistent: stop, do not skip."""


class InvalidInput(BgaMnerError):
    """One input that can never succeed; ``reason`` is the short machine-readable code the DLQ records."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigurationError(BgaMnerError):
    """The program cannot start as configured; the message says what to change."""

    exit_code = EXIT_CONFIGURATION


class MissingExtra(ConfigurationError):
    """A command needs an optional dependency group (``pip install 'bga-mner[extra]'``) that is absent."""

    def __init__(self, command: str, extra: str, module: str) -> None:
        super().__init__(
            f"`bga-mner {command}` needs the {extra!r} extra (module {module!r} is not installed): "
            f"pip install 'bga-mner[{extra}]'"
        )
        self.command = command
        self.extra = extra
        self.module = module
