"""kafka-python clients built from ``KafkaSettings``: the group consumer and the DLQ producer.

Auto-commit is off: the loop commits itself, only after Redis acknowledged a batch. The
security options are mapped in one place so consumer and producer cannot disagree.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from bga_mner.posts import LimitSettings
from worker.kafka.dead_letter import DEAD_LETTER_HEADROOM_BYTES
from worker.settings import KafkaSettings


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python's security keyword arguments (SASL/SSL) for ``settings``."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(settings, key)
            if value is not None:
                options[key] = str(value)
        if settings.ssl_password is not None:
            options["ssl_password"] = settings.ssl_password.get_secret_value()
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # the settings validator guarantees it
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def consumer_options(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "group_id": settings.group_id,
        "client_id": settings.client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": settings.auto_offset_reset,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_records": settings.max_poll_records,
        # A transactional producer's aborted (or still open) records are never tagged.
        "isolation_level": "read_committed",
        "request_timeout_ms": max(settings.request_timeout_ms, settings.session_timeout_ms + 1),
        **security_options(settings),
    }


def create_consumer(settings: KafkaSettings) -> KafkaConsumer:
    """An unsubscribed group consumer: the loop subscribes with its rebalance listener."""
    return KafkaConsumer(**consumer_options(settings))


def dead_letter_max_request_bytes(limits: LimitSettings) -> int:
    """The largest dead letter the DLQ producer must accept: the largest message the input contract
    lets through to parsing, plus room for key, headers and framing."""
    return limits.max_message_bytes() + DEAD_LETTER_HEADROOM_BYTES


def create_producer(settings: KafkaSettings, limits: LimitSettings | None = None) -> KafkaProducer:
    """The dead-letter producer: every replica acknowledges, so an acked DLQ record survives.

    ``max_request_size`` covers the largest message the limits allow (kafka-python's default, 1 MiB,
    is below a post with a 5 MB image). The DLQ topic's ``max.message.bytes`` must be raised to
    match, or the broker refuses such dead letters and they are kept without their value.
    """
    return KafkaProducer(
        bootstrap_servers=list(settings.bootstrap_servers),
        client_id=f"{settings.client_id}-dlq",
        acks="all",
        retries=5,
        linger_ms=5,
        # Bounded, so an unreachable broker never blocks the loop past its liveness and poll budgets:
        # send() gives up after max_block_ms (the dead letter stays queued and is sent again), and
        # delivery (retries included) ends after the send timeout.
        max_block_ms=settings.dlq_max_block_ms,
        delivery_timeout_ms=int(settings.dlq_send_timeout_s * 1000),
        request_timeout_ms=max(1, min(30_000, int(settings.dlq_send_timeout_s * 1000) - 5)),
        max_request_size=dead_letter_max_request_bytes(limits if limits is not None else LimitSettings()),
        **security_options(settings),
    )
