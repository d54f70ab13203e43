"""Routing messages that can never succeed to the dead-letter topic, under the dead-letter limit.

Every accepted and every rejected message is recorded with the ``DeadLetterPolicy`` in consumption
order; when too many fail, ``reject`` raises ``DeadLetterLimitExceeded`` *before* sending, so that
message is neither dead-lettered nor committed and the worker stops (something systemic is wrong).
"""

from __future__ import annotations

import logging

from kafka.consumer.fetcher import ConsumerRecord

from worker.kafka.dead_letter import DeadLetterPolicy
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.checkpointer import Checkpointer
from worker.settings import DeadLetterSettings

log = logging.getLogger(__name__)


class DeadLetterRouter:
    def __init__(
        self, settings: DeadLetterSettings, checkpointer: Checkpointer, metrics: WorkerMetrics
    ) -> None:
        self._policy = DeadLetterPolicy(settings)
        self._checkpointer = checkpointer
        self._metrics = metrics

    def accepted(self) -> None:
        """A message became a post (judged in consumption order, not when its batch finishes: a success
        recorded late would come after every failure of the same poll and make them look consecutive)."""
        self._policy.record(failed=False)

    def reject(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        self._policy.record(failed=True)  # raises before sending when the limit is crossed
        log.warning(
            "dead-lettering message",
            extra={
                "fields": {
                    "reason": reason,
                    "detail": detail,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                }
            },
        )
        self._metrics.dead_lettered.labels(reason=reason).inc()
        self._checkpointer.dead_letter(record, reason, detail)
