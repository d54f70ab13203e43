"""Free TCP ports on the loopback interface, so that two stacks (two test runs) never collide."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ports the kernel reports free right now, all distinct.

    The sockets are held open together until every port is chosen, so one call never returns the
    same port twice. Between closing them and the server binding there is a small race with other
    processes; the stack retries a service whose port was taken in the meantime.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port (a cheap probe before a protocol check)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
