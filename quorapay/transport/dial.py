"""Dialing a websocket: TCP, then TLS 1.3 with the verified identity of the other end, then the
upgrade -- bounded, isolated, and closed on every failure.

trio-websocket 0.12's `connect_websocket` has three failure modes this avoids: it waits for the
opening handshake with no failure path (a server that closes the TCP connection during the
handshake, a node being killed, leaves it waiting for ever, its stream never closed); a websocket
aborted by its peer is never closed; and a rejected upgrade raises in the reader task, in the
caller's nursery. Here the stream is opened by us and watched for end-of-stream during the
handshake, each connection's reader runs in a nursery of its own, the whole dial is bounded,
and the stream is closed on any failure and on every close. A refused upgrade is raised as
trio-websocket's `ConnectionRejected` (its status and reason intact); a TLS failure names the
alert as `TlsRefused` (a node refusing our certificate says so at our first read, in TLS 1.3 --
when the alert reaches us: trio drops it on a failed server handshake, so a refused certificate
can look like a closed connection). An abrupt end is a plain HandshakeError: worth a retry.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from quorapay.security.identity import Principal, principal_of
from quorapay.transport.address import Address


class TlsRefused(HandshakeError):
    """TLS failed on a certificate: ours was refused, or theirs is not of this cluster's CA."""


@dataclass(frozen=True, slots=True)
class DialedLink:
    """A connected websocket, the identity the other end proved, and the stream under it."""

    ws: WebSocketConnection
    principal: Principal | None
    stream: trio.abc.Stream

    async def aclose(self) -> None:
        """Close politely if the peer answers within a second; the socket in any case."""
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            await self.ws.aclose()
        await trio.aclose_forcefully(self.stream)


async def dial(nursery: trio.Nursery, address: Address, *, tls: ssl.SSLContext | None,
               cluster: str | None = None, timeout: float, max_message_size: int
               ) -> DialedLink:
    """A connected websocket whose reader runs in a task of `nursery`; the caller MUST aclose().

    With `tls`, the server's certificate is verified against the context (host names too, if
    the context checks them), and its principal (when `cluster` is given) returned.
    Raises HandshakeError (ConnectionRejected for a refused upgrade) or OSError if the
    connection, its TLS or its upgrade fails or takes over `timeout`. Once connected, a
    failing connection ends only its own task: users see ConnectionClosed.
    """
    where = f"{address.host}:{address.port}"
    try:
        with trio.fail_after(timeout):
            tcp = await trio.open_tcp_stream(address.host, address.port)
    except trio.TooSlowError:
        raise HandshakeError(f"connecting to {where} timed out") from None
    stream: trio.abc.Stream = tcp
    principal = None
    try:
        with trio.fail_after(timeout):
            if tls is not None:
                secured = trio.SSLStream(tcp, tls, server_hostname=address.host)
                try:
                    await secured.do_handshake()
                except trio.BrokenResourceError as exc:
                    if _is_tls(exc):
                        raise TlsRefused(f"TLS with {where} failed: {_tls_reason(exc)}") from None
                    raise HandshakeError(f"TLS with {where} failed: {exc.__cause__ or exc}"
                                         ) from None
                stream = secured
                if cluster is not None:
                    principal = principal_of(secured.getpeercert(), cluster)
            ws = await nursery.start(_run_connection, stream, where, max_message_size)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise HandshakeError(f"websocket handshake with {where} timed out") from None
        raise
    return DialedLink(ws=ws, principal=principal, stream=stream)


_CONNECTION_FAILURES = (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError,
                        trio.ClosedResourceError)


class _WatchedStream(trio.abc.Stream):
    """A stream that says when the peer closed it, and why (trio-websocket's handshake does
    not)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()
        self.failure: BaseException | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        raise NotImplementedError("websockets never half-close")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except BaseException as exc:
            self.failure = exc
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _handshake(nursery: trio.Nursery, stream: _WatchedStream, host: str,
                     max_message_size: int) -> WebSocketConnection:
    """The upgrade, or HandshakeError as soon as the peer closes the connection."""
    connection: WebSocketConnection | None = None
    async with trio.open_nursery() as race:
        async def handshake() -> None:
            nonlocal connection
            connection = await wrap_client_stream(nursery, stream, host, "/",  # type: ignore[arg-type]
                                                  max_message_size=max_message_size)
            race.cancel_scope.cancel()

        async def closed() -> None:
            await stream.ended.wait()
            race.cancel_scope.cancel()
        race.start_soon(handshake)
        race.start_soon(closed)
    if connection is None:
        if stream.failure is not None and _is_tls(stream.failure):
            raise TlsRefused(f"{host} refused this client's certificate: "
                             f"{_tls_reason(stream.failure)} (is the credential from this "
                             "cluster's secrets dir?)")
        raise HandshakeError(f"{host} closed the connection during the handshake")
    return connection


async def _run_connection(stream: trio.abc.Stream, host: str, max_message_size: int, *,
                          task_status: trio.TaskStatus[WebSocketConnection]) -> None:
    """Own one websocket's reader in a nursery of its own, so that its failure (a rejected
    upgrade, a reset) ends this task only; close the stream whatever happens."""
    started = False
    try:
        async with trio.open_nursery() as inner:
            ws = await _handshake(inner, _WatchedStream(stream), host, max_message_size)
            task_status.started(ws)
            started = True
    except BaseExceptionGroup as group:
        failures, rest = group.split(_CONNECTION_FAILURES)
        if rest is not None:
            raise  # cancellation (or a bug): not ours to swallow
        if not started:
            assert failures is not None
            first = failures.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            if isinstance(first, ConnectionRejected | HandshakeError):
                raise first from None
            raise HandshakeError(f"{host}: {first!r}") from None
    finally:
        await trio.aclose_forcefully(stream)


def _is_tls(exc: BaseException) -> bool:
    """Whether TLS itself failed (a certificate refused, an alert): not worth retrying. An
    abrupt end of the connection -- a node killed mid-handshake -- is not: it may well be."""
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    return isinstance(cause, ssl.SSLError) and not isinstance(
        cause, ssl.SSLEOFError | ssl.SSLZeroReturnError)


def _tls_reason(exc: BaseException) -> str:
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    reason = getattr(cause, "reason", None)
    return str(reason or cause or exc)
