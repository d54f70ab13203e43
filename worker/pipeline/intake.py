"""Step 1: a consumed Kafka record becomes an ``Item``, or an ``InvalidInput`` saying why it never will.

A tombstone (a record without a value: a delete on a compacted topic) is no post and no error:
``parse`` returns None, and the loop counts it and marks it done. Counting tombstones as dead
letters would let a burst of deletes trip the dead-letter limit and stop the worker.
"""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from bga_mner.posts import LimitSettings, parse_post
from worker.pipeline.items import Item


class Intake:
    def __init__(self, limits: LimitSettings) -> None:
        self._limits = limits

    def parse(self, record: ConsumerRecord) -> Item | None:
        """The record's post, None for a tombstone; raises ``InvalidInput`` (reason and detail for the
        DLQ) when the value can never become a post."""
        if record.value is None:
            return None
        return Item(record, parse_post(record.value, self._limits))
