"""A fault-injecting TCP proxy on 127.0.0.1, between the worker and one service.

Outages are injected without restarting the service (the in-memory broker would lose its data):
the proxy can pass traffic, refuse new connections, black-hole traffic (connections stay open,
nothing gets through: what a network partition looks like to a client), delay every chunk, or
cut every open connection mid-stream. A ``selector`` may restrict faults to some connections,
chosen by the first bytes the client sends (a Kafka request carries its client id there, so the
dead-letter producer's connections can be singled out while the consumer's stay healthy).

It runs an asyncio loop in a daemon thread; every control method is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole", "delay"]


class _Connection:
    """One proxied connection (hashable by identity); ``selected`` says whether faults apply to it."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter, selected: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.selected = selected


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        selector: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._target = (target_host, target_port)
        self._selector = selector
        self._mode: Mode = "pass"
        self._delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.port = 0
        self.connections_seen = 0
        self.selected_seen = 0

    # -- control (any thread) ------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        """Applies to matching connections (all, without a selector), open ones and new ones."""
        self._mode = mode
        self._delay_s = delay_s

    def cut(self) -> int:
        """Close every open (matching) connection at once, both ways; returns how many."""
        return int(asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10))

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            await self._cut(everything=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- the proxy -----------------------------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        first = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            first = await asyncio.wait_for(client_reader.read(65536), timeout=30)
        selected = self._selector is None or self._selector(first)
        self.selected_seen += int(selected)
        if selected and self._mode == "refuse":
            client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        connection = _Connection(client_writer, upstream_writer, selected)
        self._connections.add(connection)
        try:
            if first:
                await self._forward_chunk(first, upstream_writer, connection)
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, connection),
                self._pipe(upstream_reader, client_writer, connection),
                return_exceptions=True,
            )
        finally:
            self._connections.discard(connection)
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                writer.close()
                return
            await self._forward_chunk(chunk, writer, connection)

    async def _forward_chunk(
        self, chunk: bytes, writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        if connection.selected:
            while self._mode == "blackhole":  # hold the bytes: the peer sees a silent network
                await asyncio.sleep(0.05)
            if self._mode == "delay" and self._delay_s > 0:
                await asyncio.sleep(self._delay_s)
            if self._mode == "refuse":
                writer.close()
                return
        writer.write(chunk)
        await writer.drain()

    async def _cut(self, everything: bool = False) -> int:
        cut = 0
        for connection in list(self._connections):
            if everything or connection.selected:
                connection.client.transport.abort()
                connection.upstream.transport.abort()
                cut += 1
        return cut
