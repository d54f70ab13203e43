"""Backpressure: pause every assigned partition while batches wait for a slot; resume once they fit.

Checked on every iteration against the consumer's own paused set, so partitions assigned in a
rebalance are paused too, and none stays paused by accident after one. Pausing is subscription
state only (no network round trip), and the loop keeps polling while paused, which keeps the
group membership alive.
"""

from __future__ import annotations

import logging

from worker.pipeline.ports import Consumer

log = logging.getLogger(__name__)


class Backpressure:
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.paused = False

    def update(self, backlogged: bool) -> None:
        if backlogged:
            unpaused = set(self._consumer.assignment()) - set(self._consumer.paused())
            if unpaused:
                self._consumer.pause(*unpaused)
            if not self.paused:
                log.info("backpressure: pausing partitions")
            self.paused = True
            return
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)
        if self.paused:
            log.info("backpressure released: resuming partitions")
        self.paused = False
