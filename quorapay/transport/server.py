"""Accepting websockets: admission, TLS, identity, authorization, then the handler.

For each accepted TCP connection, in order and within `Limits.handshake_timeout` of accept:
take a slot (`limits.Admission`), complete TLS 1.3 (the certificate, if any, gives the verified
`Principal`), read the websocket upgrade request, and ask `authorize` whether this principal may
connect -- a refusal is answered with an HTTP status and a one-line reason before any websocket
message is read. Only then does the handler run, with a `Link` whose `receive` counts as activity;
a link that receives nothing for `idle_timeout` seconds is closed. Whatever happens on one
connection ends that connection only: it is logged, never raised into the node.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from quorapay.logs.quiet import QuietLog
from quorapay.security.identity import Principal, principal_of
from quorapay.transport.limits import Admission, Limits, Ticket

log = logging.getLogger(__name__)
CLOSE_GRACE = 1.0  # seconds for a polite websocket close before the socket is cut


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401: who are you? 403: not you
    reason: str


Authorize = Callable[[Principal | None], Refusal | None]


class Link:
    """An authenticated websocket connection: who is on the other end, and its traffic."""

    def __init__(self, ws: WebSocketConnection, principal: Principal | None, remote: str) -> None:
        self.ws = ws
        self.principal = principal
        self.remote = remote
        self.last_received = trio.current_time()

    async def receive(self) -> str | bytes:
        """The next message (ConnectionClosed when the link is gone)."""
        data = await self.ws.get_message()
        self.last_received = trio.current_time()
        return data

    async def send(self, data: str | bytes) -> None:
        await self.ws.send_message(data)


Handler = Callable[[Link], Awaitable[None]]
_EXPECTED = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed, OSError,
             ssl.SSLError)


class WebsocketServer:
    """Serves one kind of listener (peer or client) of a node."""

    def __init__(self, handler: Handler, *, what: str, cluster: str,
                 tls: ssl.SSLContext | None, authorize: Authorize, limits: Limits,
                 max_message_size: int) -> None:
        self._handler = handler
        self._what = what
        self._cluster = cluster
        self._tls = tls
        self._authorize = authorize
        self.admission = Admission(limits)
        self._limits = limits
        self._max_message_size = max_message_size
        self._quiet = QuietLog(log)

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]]
                    = trio.TASK_STATUS_IGNORED) -> None:
        """Accept on `listeners` until cancelled (started: once they accept)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flush_quiet_log)
            task_status.started(await nursery.start(
                partial(trio.serve_listeners, self._accepted, listeners)))

    async def _flush_quiet_log(self) -> None:
        """Rate-limited warnings held back (the end of a flood) are told once their time is up."""
        while True:
            await trio.sleep(self._quiet.interval)
            self._quiet.flush()

    async def _accepted(self, stream: trio.SocketStream) -> None:
        remote = _remote(stream)
        ticket = self.admission.admit(remote.rsplit(":", 1)[0])
        if ticket is None:
            self._quiet.warning(f"full-{self._what}", "%s listener full: refused a connection "
                                "from %s (%d open)", self._what, remote, self.admission.open)
            await trio.aclose_forcefully(stream)
            return
        try:
            with ticket.scope:
                await self._serve_one(stream, ticket, remote)
        except Exception:  # the outermost loop of one connection: log, never crash the node
            log.exception("internal error on a %s connection from %s", self._what, remote)
        finally:
            ticket.release()
            await trio.aclose_forcefully(stream)

    async def _serve_one(self, stream: trio.SocketStream, ticket: Ticket, remote: str) -> None:
        try:
            async with trio.open_nursery() as nursery:  # the websocket's reader runs here
                link = await self._open(nursery, stream, remote, ticket)
                if link is not None:
                    nursery.start_soon(self._close_when_idle, link, nursery.cancel_scope)
                    try:
                        await self._handler(link)
                    finally:
                        await _close(link.ws)
                nursery.cancel_scope.cancel()
        except* _EXPECTED as group:
            log.debug("%s connection from %s ended: %r", self._what, remote, group.exceptions[0])

    async def _open(self, nursery: trio.Nursery, stream: trio.SocketStream, remote: str,
                    ticket: Ticket) -> Link | None:
        """The handshakes, within the deadline; None if the connection was refused."""
        with trio.move_on_after(self._limits.handshake_timeout) as deadline:
            transport: trio.abc.Stream = stream
            principal = None
            if self._tls is not None:
                secured = trio.SSLStream(stream, self._tls, server_side=True)
                try:
                    await secured.do_handshake()
                except trio.BrokenResourceError as exc:
                    self._quiet.warning(f"tls-{self._what}", "refused a %s connection from %s: "
                                        "TLS handshake failed (%s)", self._what, remote,
                                        _reason(exc))
                    return None
                principal = principal_of(secured.getpeercert(), self._cluster)
                transport = secured
            request = await wrap_server_stream(nursery, transport,
                                               max_message_size=self._max_message_size)
            refusal = self._authorize(principal)
            if refusal is None and not ticket.authenticated(
                    principal.uri if principal is not None else None):
                refusal = Refusal(429, f"{principal} holds as many connections as one "
                                  "credential may; close some first")
            if refusal is not None:
                self._quiet.warning(f"refused-{self._what}-{refusal.status}",
                                    "refused a %s connection from %s (%s): %s", self._what,
                                    remote, principal or "no certificate", refusal.reason)
                await request.reject(refusal.status, body=refusal.reason.encode() + b"\n")
                return None
            ws = await request.accept()
            return Link(ws, principal, remote)
        if deadline.cancelled_caught:
            self.admission.timed_out += 1
            self._quiet.warning(f"slow-{self._what}", "dropped a %s connection from %s: no "
                                "handshake within %gs", self._what, remote,
                                self._limits.handshake_timeout)
        return None

    async def _close_when_idle(self, link: Link, scope: trio.CancelScope) -> None:
        idle = self._limits.idle_timeout
        while True:
            quiet_since = link.last_received
            await trio.sleep_until(quiet_since + idle)
            if link.last_received == quiet_since:
                log.info("closing a %s connection from %s: nothing received for %gs",
                         self._what, link.remote, idle)
                await _close(link.ws)
                scope.cancel()
                return


async def _close(ws: WebSocketConnection) -> None:
    """Close politely if the other end answers within a grace period; the socket in any case."""
    with trio.move_on_after(CLOSE_GRACE) as scope:
        scope.shield = True
        await ws.aclose()


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "unknown:0"
    return f"{host}:{port}"


def _reason(exc: BaseException) -> Any:
    cause = exc.__cause__
    return getattr(cause, "reason", None) or cause or exc
