"""The worker's Prometheus metrics, in their own registry so tests and several workers in one process
never collide in the global one.

Names (the table in deploy/README.md, which alerts and dashboards query):
bga_mner_posts_consumed_total{topic}, bga_mner_posts_tagged_total, bga_mner_dead_letter_total{reason},
bga_mner_batch_size, bga_mner_triton_latency_seconds, bga_mner_redis_latency_seconds,
bga_mner_end_to_end_latency_seconds, bga_mner_in_flight_requests, bga_mner_consumer_lag{topic,partition},
bga_mner_errors_total{stage}, bga_mner_circuit_breaker_open, bga_mner_tombstones_total{topic},
bga_mner_dependency_up{dependency}.

Who observes what: ``TritonBackend`` observes triton_latency_seconds, errors{stage="inference"} and
circuit_breaker_open; ``RedisSink`` observes redis_latency_seconds, end_to_end_latency_seconds and
errors{stage="redis"}; the loop observes the rest.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latencies of one gRPC call or one Redis round trip: milliseconds to seconds.
_SERVICE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# End-to-end: from the producer's timestamp, so it includes queueing in Kafka (seconds to minutes).
_END_TO_END_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "bga_mner") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, namespace
        self.consumed = Counter(
            "posts_consumed", "Kafka messages received", ["topic"], namespace=ns, registry=r
        )
        self.tagged = Counter("posts_tagged", "posts tagged and written to Redis", namespace=ns, registry=r)
        self.dead_lettered = Counter(
            "dead_letter", "messages sent to the dead-letter topic", ["reason"], namespace=ns, registry=r
        )
        self.batch_size = Histogram(
            "batch_size", "posts per micro-batch", namespace=ns, registry=r, buckets=_BATCH_BUCKETS
        )
        self.triton_latency_seconds = Histogram(
            "triton_latency_seconds",
            "one Triton inference request",
            namespace=ns,
            registry=r,
            buckets=_SERVICE_BUCKETS,
        )
        self.redis_latency_seconds = Histogram(
            "redis_latency_seconds",
            "one batch write to Redis",
            namespace=ns,
            registry=r,
            buckets=_SERVICE_BUCKETS,
        )
        self.end_to_end_latency_seconds = Histogram(
            "end_to_end_latency_seconds",
            "from the Kafka message timestamp to Redis acknowledging its record",
            namespace=ns,
            registry=r,
            buckets=_END_TO_END_BUCKETS,
        )
        self.in_flight = Gauge(
            "in_flight_requests", "batches sent to Triton/Redis and not yet done", namespace=ns, registry=r
        )
        self.consumer_lag = Gauge(
            "consumer_lag", "end offset minus position", ["topic", "partition"], namespace=ns, registry=r
        )
        self.errors = Counter("errors", "failures by stage", ["stage"], namespace=ns, registry=r)
        self.dependency_up = Gauge(
            "dependency_up",
            "1 while a dependency answers (triton: the model is ready; redis: PING), probed at each scrape",
            ["dependency"],
            namespace=ns,
            registry=r,
        )
        self.tombstones = Counter(
            "tombstones",
            "records without a value (deletes on a compacted topic): skipped and committed",
            ["topic"],
            namespace=ns,
            registry=r,
        )
        self.circuit_open = Gauge(
            "circuit_breaker_open", "1 while the Triton circuit breaker is open", namespace=ns, registry=r
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
