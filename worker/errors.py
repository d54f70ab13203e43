"""The worker's exception base, beside the kinds of ``bga_mner.errors`` that decide what happens.

Every error a worker component raises on purpose is a ``WorkerError`` *and* one kind:
``TransientError`` (retried, nothing committed past it), ``RejectedError`` (the worker stops),
``InvalidInput`` (that message is dead-lettered) or ``ConfigurationError`` (it refuses to start).
The stream loop handles errors by kind only.
"""

from __future__ import annotations

from bga_mner.errors import BgaMnerError, ConfigurationError

EXIT_DEAD_LETTER_LIMIT = 3


class WorkerError(BgaMnerError):
    """Base of the worker's own errors."""


class StartupError(WorkerError, ConfigurationError):
    """The worker cannot start: a dependency is unreachable, or the deployment disagrees with itself."""
