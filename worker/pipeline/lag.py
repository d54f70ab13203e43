"""The consumer-lag gauge, per owned partition: end offset minus this worker's fetch position.

It shows how far this worker's *fetching* is behind; the lag that autoscaling and alerts use is the
group's committed-offset lag, which the broker reports whether or not a worker is alive (see
docs/operations.md). Gauges of partitions this worker no longer owns are removed, so sums over
workers never add stale values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import TopicPartition
from kafka.errors import KafkaError

from worker.observability.metrics import WorkerMetrics
from worker.pipeline.ports import Consumer

OBSERVE_EVERY_S = 5.0


class LagGauge:
    def __init__(
        self,
        consumer: Consumer,
        metrics: WorkerMetrics,
        *,
        every_s: float = OBSERVE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._every_s = every_s
        self._clock = clock
        self._last = float("-inf")
        self._shown: set[TopicPartition] = set()

    def observe(self) -> None:
        now = self._clock()
        if now - self._last < self._every_s:
            return
        self._last = now
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    end - position
                )
                self._shown.add(tp)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if tp in self._shown:
                self._shown.discard(tp)
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
