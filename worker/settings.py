"""Worker configuration from environment variables (prefix ``BGA_``, nested with ``__``).

Everything an operator sets lives here, in one typed tree, so that Kubernetes manifests, the
docs' configuration table and the code cannot disagree. Secrets are ``SecretStr``: their repr,
``str()`` and JSON dump are masked, so logging the settings never leaks a password.

Examples: ``BGA_KAFKA__BOOTSTRAP_SERVERS=kafka:9092``, ``BGA_KAFKA__TOPICS=posts,posts-eu``,
``BGA_REDIS__PASSWORD=...``, ``BGA_BATCHING__MAX_BATCH_SIZE=64``, ``BGA_MODEL_REPOSITORY=/models``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bga_mner.posts import LimitSettings

LIVENESS_FLOOR_S = 60
"""The shortest liveness timeout (/healthz): max(60 s, 2 x shutdown_grace_s)."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string: the latter is what people type in YAML env."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:9092"], description="host:port list (comma-separated in env)"
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["posts"], min_length=1, description="input topics (comma-separated in env)"
    )
    group_id: str = Field(default="bga-mner-worker", min_length=1, description="consumer group")
    client_id: str = Field(default="bga-mner-worker", description="client id shown in broker logs")
    dlq_topic: str = Field(default="posts.dlq", min_length=1, description="dead-letter topic")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a group without committed offsets starts"
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    )
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="needed with SASL_*")
    sasl_username: str | None = Field(default=None, description="needed with SASL_*")
    sasl_password: SecretStr | None = Field(default=None, description="needed with SASL_*")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle for SSL/SASL_SSL")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="client key (mutual TLS)")
    ssl_password: SecretStr | None = Field(default=None, description="password of the client key")
    ssl_check_hostname: bool = Field(default=True, description="verify the broker certificate's host name")
    max_poll_interval_ms: int = Field(default=300_000, gt=0, description="also the group's rebalance timeout")
    session_timeout_ms: int = Field(
        default=45_000, gt=0, description="group member considered dead after this"
    )
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="below session_timeout_ms / 3")
    max_poll_records: int = Field(default=500, gt=0, description="most messages one poll returns")
    poll_timeout_ms: int = Field(default=200, gt=0, description="longest a poll blocks when nothing is due")
    request_timeout_ms: int = Field(default=305_000, gt=0, description="Kafka client request timeout")
    dlq_send_timeout_s: float = Field(
        default=30.0, gt=0, description="how long the DLQ producer tries to deliver one dead letter"
    )
    dlq_max_block_ms: int = Field(
        default=2_000, gt=0, description="longest a dead-letter send blocks the loop (broker away)"
    )
    dlq_flush_wait_ms: int = Field(
        default=500, gt=0, description="longest the loop waits for dead-letter acks per iteration"
    )
    commit_timeout_ms: int = Field(
        default=5_000, gt=0, description="longest an offset commit blocks the loop"
    )

    @field_validator("bootstrap_servers", "topics", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and (
            self.sasl_mechanism is None or self.sasl_username is None or self.sasl_password is None
        ):
            raise ValueError(
                f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        # A blocking call must never outlast the poll-interval budget, or the group evicts a healthy
        # worker (and the liveness probe, which allows at least 60 s, restarts it).
        budget = min(self.max_poll_interval_ms, LIVENESS_FLOOR_S * 1000) // 2
        for name in ("commit_timeout_ms", "dlq_max_block_ms", "dlq_flush_wait_ms", "poll_timeout_ms"):
            if getattr(self, name) > budget:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be at most half of min(max_poll_interval_ms, the "
                    f"{LIVENESS_FLOOR_S} s liveness floor) = {budget}: a blocked loop is evicted or restarted"
                )
        return self


class RedisSettings(_Section):
    url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// URL (may hold a password); overrides host/port/db"
    )
    host: str = Field(default="127.0.0.1", description="used when url is not set")
    port: int = Field(default=6379, gt=0, lt=65536, description="used when url is not set")
    db: int = Field(default=0, ge=0, description="used when url is not set")
    username: str | None = Field(default=None, description="Redis 6+ ACL user")
    password: SecretStr | None = Field(default=None, description="AUTH password")
    tls: bool = Field(default=False, description="TLS (implied by a rediss:// url)")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle for TLS")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="client key (mutual TLS)")
    socket_timeout_s: float = Field(default=5.0, gt=0, description="connect and command timeout")
    key_prefix: str = Field(default="bga", min_length=1, description="every key starts with '<prefix>:'")
    record_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0, description="TTL of per-post records")
    trending_bucket_seconds: int = Field(
        default=300, gt=0, description="width of a trending-count time bucket"
    )
    trending_ttl_seconds: int = Field(default=2 * 24 * 3600, gt=0, description="TTL of trending buckets")
    stream_maxlen: int = Field(default=100_000, gt=0, description="approximate cap of the results stream")
    max_clock_skew_s: int = Field(
        default=300, ge=0, description="a post dated later than now + this is bucketed at now + this"
    )
    store_records: bool = Field(
        default=True,
        description="write the per-post record hash; false = compact mode: dedupe markers, trending and "
        "the results stream only (docs/capacity.md)",
    )

    @model_validator(mode="after")
    def _marker_outlives_trending(self) -> RedisSettings:
        # A post's record (its "counted" marker) must outlive every trending bucket it counted in,
        # or a replay after the marker expired counts the post again in a bucket still alive.
        # A bucket may start up to max_clock_skew_s in the future (a post dated ahead of this clock is
        # clamped to now + skew), so its counts live until now + skew + trending_ttl_seconds.
        needed = self.trending_ttl_seconds + self.trending_bucket_seconds + self.max_clock_skew_s
        if self.record_ttl_seconds < needed:
            raise ValueError(
                f"record_ttl_seconds ({self.record_ttl_seconds}) must be at least trending_ttl_seconds "
                f"+ trending_bucket_seconds + max_clock_skew_s ({needed}): a replayed post would be "
                "counted twice"
            )
        return self


class TritonSettings(_Section):
    url: str = Field(
        default="127.0.0.1:8001",
        description="gRPC host:port, or dns:///<headless service>:8001 to spread over Triton pods",
    )
    load_balancing: Literal["round_robin", "pick_first"] = Field(
        default="round_robin", description="gRPC policy over the addresses the URL resolves to"
    )
    model_name: str = Field(default="bga_mner", description="served model name = directory in the repository")
    model_version: str = Field(default="", description="'' = the version the model repository holds")
    ssl: bool = Field(default=False, description="TLS to Triton's gRPC endpoint")
    root_certificates: Path | None = Field(default=None, description="CA bundle for TLS")
    private_key: Path | None = Field(default=None, description="client key (mutual TLS)")
    certificate_chain: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    timeout_s: float = Field(default=10.0, gt=0, description="per request")
    retries: int = Field(default=3, ge=0, description="per request, before the batch counts as failed")
    backoff_initial_s: float = Field(default=0.1, gt=0, description="first retry delay (exponential, jitter)")
    backoff_max_s: float = Field(default=5.0, gt=0, description="longest retry delay")
    backoff_jitter_s: float = Field(
        default=0.1, ge=0, description="random extra delay, so workers do not retry in lock-step"
    )
    startup_timeout_s: float = Field(
        default=60.0, gt=0, description="how long start-up waits for the model to become ready"
    )
    circuit_failure_threshold: int = Field(
        default=5, gt=0, description="consecutive failures that open the circuit"
    )
    circuit_reset_s: float = Field(default=10.0, gt=0, description="open time before a trial request")


class BatchingSettings(_Section):
    """A micro-batch of posts is length-sorted as a whole, then sent as requests of ``request_size``
    windows: a larger micro-batch means less padding (256 posts: 9 % of tokens are padding against 40 %
    at 32, docs/performance.md)."""

    max_batch_size: int = Field(
        default=256, gt=0, description="posts per micro-batch (the window requests are length-sorted across)"
    )
    request_size: int = Field(default=32, gt=0, description="windows per Triton request")
    concurrent_requests: int = Field(
        default=2, gt=0, description="requests of one micro-batch in Triton at once"
    )
    max_wait_ms: int = Field(
        default=50, ge=0, description="oldest post's longest wait before a partial batch goes"
    )
    max_in_flight_batches: int = Field(
        default=2, gt=0, description="batches in Triton/Redis at once; then pause"
    )


class ImageSettings(_Section):
    fetch_urls: bool = Field(
        default=False, description="off by default: fetching URLs from posts is an SSRF risk"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="exact host names allowed when fetch_urls is on"
    )
    timeout_s: float = Field(
        default=3.0, gt=0, description="total per image: resolving, connecting, redirects and the body"
    )
    max_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="download size cap")
    max_redirects: int = Field(default=3, ge=0, description="same-host https redirects followed")
    allow_private_addresses: bool = Field(
        default=False,
        description="also fetch from hosts that resolve to private/loopback/link-local addresses "
        "(an internal image store); off: such addresses are refused (SSRF)",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)


class DeadLetterSettings(_Section):
    max_ratio: float = Field(
        default=0.5, gt=0, le=1, description="dead-lettered share of the window that stops"
    )
    window: int = Field(default=200, gt=0, description="recent messages the ratio is measured over")
    max_consecutive: int = Field(
        default=100, gt=0, description="dead-lettered in a row that stops the worker"
    )


class RetrySettings(_Section):
    """Outer retry of a whole batch while Triton or Redis fail; the batch is never dropped."""

    initial_s: float = Field(default=0.5, gt=0, description="first delay before a failed batch is retried")
    max_s: float = Field(default=30.0, gt=0, description="longest delay between retries of a batch")


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BGA_", env_nested_delimiter="__", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    model_repository: Path = Field(default=Path("model_repository"), description="exported model repository")
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    dlq: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    metrics_port: int = Field(
        default=9108, ge=0, lt=65536, description="/metrics, /healthz, /readyz; 0 = any free"
    )
    shutdown_grace_s: float = Field(default=30.0, gt=0, description="drain time after SIGTERM")
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR, CRITICAL")
