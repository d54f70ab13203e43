"""Retrying a batch's calls while a dependency is unavailable: forever, until the shutdown aborts it.

Only ``TransientError``s are retried (Triton or Redis unreachable, busy, failing over): the batch is
never dropped, nothing after it is committed, and the loop applies backpressure meanwhile. Any other
error leaves at once. ``abort()`` ends every retry loop at its next wait, when the grace period of a
shutdown is over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential, wait_random

from bga_mner.errors import TransientError
from worker.settings import RetrySettings

log = logging.getLogger(__name__)
R = TypeVar("R")


class Retrier:
    def __init__(self, settings: RetrySettings, *, sleep: Callable[[float], None] | None = None) -> None:
        """``sleep`` is a test knob (default: wait on the abort event, so an abort ends the wait)."""
        self._settings = settings
        self._aborted = threading.Event()
        self._sleep = sleep if sleep is not None else self._wait

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def abort(self) -> None:
        self._aborted.set()

    def _wait(self, seconds: float) -> None:
        self._aborted.wait(seconds)

    def call(self, stage: str, call: Callable[[], R]) -> R:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s failed, retrying the batch",
                stage,
                extra={"fields": {"attempt": state.attempt_number, "error": repr(error)}},
            )

        settings = self._settings
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=settings.initial_s, max=settings.max_s)
            + wait_random(0, settings.initial_s),
            stop=lambda _state: self._aborted.is_set(),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(call)
