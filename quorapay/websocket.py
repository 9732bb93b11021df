"""Opening client websockets without the two failure modes of trio-websocket 0.12's connect.

`trio_websocket.connect_websocket` waits for the opening handshake with no failure path: if the
server closes the TCP connection during the handshake (a node being killed, say) it waits
forever, and the stream it opened is never closed; and a websocket aborted by its peer is never
closed either. Here we open the TCP stream ourselves, bound the handshake, and close the stream
on any failure and on every close.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
from trio_websocket import HandshakeError, WebSocketConnection, wrap_client_stream


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
    """A connected websocket whose reader runs in `nursery`; the caller MUST aclose() it.

    Raises HandshakeError (or OSError) if the connection or its handshake fails, or does not
    complete within `timeout` seconds.
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
            ws = await wrap_client_stream(nursery, stream, f"{parts.hostname}:{parts.port}",
                                          parts.path or "/", max_message_size=max_message_size)
            return ClientWebsocket(ws=ws, stream=stream)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise HandshakeError(f"websocket handshake with {url} timed out") from None
        raise
