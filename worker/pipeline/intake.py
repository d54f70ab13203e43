"""Step 1: a consumed Kafka record becomes an ``Item``, or an ``InvalidInput`` saying why it never will."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from bga_mner.errors import InvalidInput
from bga_mner.posts import LimitSettings, parse_post
from worker.pipeline.items import Item


class Intake:
    def __init__(self, limits: LimitSettings) -> None:
        self._limits = limits

    def parse(self, record: ConsumerRecord) -> Item:
        """The record's post; raises ``InvalidInput`` (reason and detail for the DLQ) otherwise."""
        if record.value is None:
            raise InvalidInput("tombstone", "the message has no value (a tombstone)")
        return Item(record, parse_post(record.value, self._limits))
