from __future__ import annotations

import socket

from bga_mner.stack.ports import free_ports, is_listening


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_is_listening_sees_a_listening_socket_only() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert is_listening(port)
    assert not is_listening(port)
