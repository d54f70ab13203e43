"""Rebalances: kafka-python's listener only records them; the loop applies them on its own thread.

kafka-python 3 calls the listener on its IO thread, where the consumer must not be touched (it is
not thread-safe), waiting for batches would stall heartbeats and a blocking commit is refused. So
the listener queues an event, nothing else; ``drain`` hands the events to the
loop, which applies them before it takes the records of the next poll.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Literal

from kafka import ConsumerRebalanceListener, TopicPartition


@dataclass(frozen=True)
class RebalanceEvent:
    kind: Literal["revoked", "assigned"]
    partitions: frozenset[TopicPartition]


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self._events: queue.SimpleQueue[RebalanceEvent] = queue.SimpleQueue()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._events.put(RebalanceEvent("revoked", frozenset(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._events.put(RebalanceEvent("assigned", frozenset(assigned)))

    def drain(self) -> list[RebalanceEvent]:
        """Every event since the last call, in order (the loop's thread)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events
