"""Opening client websockets without the two failure modes of trio-websocket 0.12's connect.

`trio_websocket.connect_websocket` waits for the opening handshake with no failure path: if the
server closes the TCP connection during the handshake (a node being killed, say) it waits
forever, and the stream it opened is never closed; and a websocket aborted by its peer is never
closed either; and a rejected upgrade raises in the reader task, in the caller's nursery. Here
we open the TCP stream ourselves, watch it for end-of-stream during the handshake, run each
connection's reader in a nursery of its own, bound the handshake, and close the stream on any
failure and on every close.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)


@dataclass(frozen=True, slots=True)
class ClientWebsocket:
    ws: WebSocketConnection
    stream: trio.SocketStream

    async def aclose(self) -> None:
        """Close politely if the peer answers within a second; the socket in any case."""
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            await self.ws.aclose()
        await trio.aclose_forcefully(self.stream)


async def connect(nursery: trio.Nursery, url: str, *, timeout: float,
                  max_message_size: int) -> ClientWebsocket:
    """A connected websocket whose reader runs in a task of `nursery`; the caller MUST aclose().

    Raises HandshakeError (or OSError) if the connection or its handshake fails -- the server
    refused, answered with something other than a websocket upgrade, or took over `timeout`.
    Once connected, a failing connection ends only its own task: users see ConnectionClosed.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
        raise HandshakeError(f"not a ws://host:port/ url: {url}")
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    except trio.TooSlowError:
        raise HandshakeError(f"connecting to {url} timed out") from None
    try:
        with trio.fail_after(timeout):
            ws = await nursery.start(_run_connection, stream, f"{parts.hostname}:{parts.port}",
                                     parts.path or "/", max_message_size)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise HandshakeError(f"websocket handshake with {url} timed out") from None
        raise
    return ClientWebsocket(ws=ws, stream=stream)


_CONNECTION_FAILURES = (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError,
                        trio.ClosedResourceError)


class _WatchedStream(trio.abc.Stream):
    """A stream that says when the peer closed it (trio-websocket's handshake does not)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self.ended = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except BaseException:
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _handshake(nursery: trio.Nursery, stream: _WatchedStream, host: str, path: str,
                     max_message_size: int) -> WebSocketConnection:
    """The handshake, or HandshakeError as soon as the peer closes the connection."""
    connection: WebSocketConnection | None = None
    async with trio.open_nursery() as race:
        async def handshake() -> None:
            nonlocal connection
            connection = await wrap_client_stream(nursery, stream, host, path,  # type: ignore[arg-type]
                                                  max_message_size=max_message_size)
            race.cancel_scope.cancel()

        async def closed() -> None:
            await stream.ended.wait()
            race.cancel_scope.cancel()
        race.start_soon(handshake)
        race.start_soon(closed)
    if connection is None:
        raise HandshakeError(f"{host} closed the connection during the handshake")
    return connection


async def _run_connection(stream: trio.SocketStream, host: str, path: str,
                          max_message_size: int, *,
                          task_status: trio.TaskStatus[WebSocketConnection]) -> None:
    """Own one websocket's reader in a nursery of its own, so that its failure (a rejected
    upgrade, a reset) ends this task only; close the stream whatever happens."""
    started = False
    try:
        async with trio.open_nursery() as inner:
            ws = await _handshake(inner, _WatchedStream(stream), host, path, max_message_size)
            task_status.started(ws)
            started = True
    except BaseExceptionGroup as group:
        failures, rest = group.split(_CONNECTION_FAILURES)
        if rest is not None:
            raise  # cancellation (or a bug): not ours to swallow
        if not started:
            assert failures is not None
            raise HandshakeError(f"{host}: {failures.exceptions[0]!r}") from None
    finally:
        await trio.aclose_forcefully(stream)
