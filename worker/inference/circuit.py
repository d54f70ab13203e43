"""A small circuit breaker, so a dead Triton costs one fast failure per batch instead of a full retry ladder.

Hand-written rather than ``pybreaker``: that package is untyped, wraps calls through decorators
that hide the retry policy, and its clock cannot be injected, so its timing is hard to test.
This one is a state machine with an injectable clock and nothing else.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from bga_mner.errors import TransientError
from worker.errors import WorkerError


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(WorkerError, TransientError):
    """Raised instead of calling a dependency that failed recently."""


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; ``reset_timeout_s`` later, one trial goes.

    A successful trial closes the circuit; a failed one opens it again for another
    ``reset_timeout_s``. Thread-safe: the worker may run several in-flight batches.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout_s < 0:
            raise ValueError("reset_timeout_s must be >= 0")
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._current_state()

    @property
    def is_closed(self) -> bool:
        return self.state is CircuitState.CLOSED

    def before_call(self) -> None:
        """Raise ``CircuitOpen`` unless a call may go through now."""
        with self._lock:
            state = self._current_state()
            if state is CircuitState.CLOSED:
                return
            if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            raise CircuitOpen(f"circuit open after {self._failures} consecutive failures")

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_trial = self._trial_in_flight
            self._trial_in_flight = False
            if was_trial or self._failures >= self._threshold:
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()

    def _current_state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._reset_timeout_s:
            self._state = CircuitState.HALF_OPEN
        return self._state
