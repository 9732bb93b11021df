"""Bounds on the connections a listener holds, so that no amount of connecting starves a node.

Every accepted connection takes a slot, per listener and per source address, until it closes.
A connection that has not finished its handshake (TLS and websocket upgrade) is *unauthenticated*:
those have a small cap of their own, and when it is reached the oldest of them is dropped to make
room -- a flood of half-open connections cannot keep a real client out for longer than the few
milliseconds its own handshake takes, and costs the node one small task per slot. A handshake
gets `handshake_timeout` seconds from accept; an authenticated connection that receives nothing
for `idle_timeout` seconds is closed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_connections: int  # open on the listener, authenticated or not
    max_per_source: int  # from one address
    max_unauthenticated: int  # still in their handshake; the oldest is dropped for a new one
    handshake_timeout: float  # seconds from accept to an authenticated websocket
    idle_timeout: float  # seconds an authenticated connection may receive nothing
    max_per_principal: int = 2**31  # authenticated as one identity (one credential)


# Peers: one link per pair (a second while one reconnects); a heartbeat or clock probe every
# 0.25 s at most, so 10 s of silence is a dead link.
PEER_LIMITS = Limits(max_connections=64, max_per_source=32, max_unauthenticated=16,
                     handshake_timeout=5.0, idle_timeout=10.0, max_per_principal=4)
# Clients: pools of connections that may idle between bursts.
# Clients: pools of connections that may idle between bursts; no one credential may hold more
# than a quarter of the slots, so a payer's leak or abuse cannot lock out the operator.
CLIENT_LIMITS = Limits(max_connections=1024, max_per_source=512, max_unauthenticated=64,
                       handshake_timeout=5.0, idle_timeout=300.0, max_per_principal=256)


class Ticket:
    """One admitted connection's slot. Run the connection inside `scope`: eviction cancels it."""

    def __init__(self, admission: Admission, source: str) -> None:
        self._admission = admission
        self.source = source
        self.scope = trio.CancelScope()
        self.released = False
        self.principal: str | None = None

    def authenticated(self, principal: str | None) -> bool:
        """The handshake is done: the connection can no longer be evicted. False (and nothing
        changed) if `principal` already holds as many connections as it may."""
        counts = self._admission._per_principal
        if principal is not None:
            if counts.get(principal, 0) >= self._admission.limits.max_per_principal:
                self._admission.refused += 1
                return False
            counts[principal] = counts.get(principal, 0) + 1
            self.principal = principal
        self._admission._pending.pop(self, None)
        return True

    def release(self) -> None:
        """The connection closed (idempotent)."""
        self._admission._release(self)


class Admission:
    """The slots of one listener."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._per_source: dict[str, int] = {}
        self._per_principal: dict[str, int] = {}
        self._open = 0
        self._pending: OrderedDict[Ticket, None] = OrderedDict()
        self.refused = 0  # connections closed at once: the listener or the source was full
        self.evicted = 0  # unauthenticated connections dropped for newer ones
        self.timed_out = 0  # handshakes that took too long

    @property
    def open(self) -> int:
        return self._open

    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    def admit(self, source: str) -> Ticket | None:
        """A slot for a new connection from `source`, or None: close it at once."""
        limits = self.limits
        while self._pending and (self._open >= limits.max_connections
                                 or len(self._pending) >= limits.max_unauthenticated):
            self._evict_oldest()
        if self._per_source.get(source, 0) >= limits.max_per_source:
            self._evict_oldest(source)
        if self._open >= limits.max_connections or \
                self._per_source.get(source, 0) >= limits.max_per_source:
            self.refused += 1
            return None
        ticket = Ticket(self, source)
        self._open += 1
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._pending[ticket] = None
        return ticket

    def _evict_oldest(self, source: str | None = None) -> None:
        oldest = next((t for t in self._pending if source is None or t.source == source), None)
        if oldest is None:
            return
        self.evicted += 1
        oldest.scope.cancel()
        self._release(oldest)

    def _release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._pending.pop(ticket, None)
        self._open -= 1
        _decrement(self._per_source, ticket.source)
        if ticket.principal is not None:
            _decrement(self._per_principal, ticket.principal)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]

