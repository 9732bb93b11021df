"""A simulated ZooKeeper client: what kazoo shows the coordinator.

One session at a time. The client pings the server every third of the session timeout and
counts the connection lost when it has heard nothing for two thirds of it: it reports SUSPENDED
and fails every request still waiting with a connection loss (the request may or may not have
happened). Requests, replies and watches belong to one connection: the server drops requests of
a connection the client gave up on, and the client ignores their replies and notifications.

Like kazoo -- which, unlike ZooKeeper's C and Java clients, does not re-register watches when it
reconnects -- the client ends every watch when its connection is lost: it reports each one as
fired (kazoo's NONE event, which the node's adapter turns into WatchFired) and forgets it.

It then tries to reconnect; only the server can say whether the session expired meanwhile, so a
client cut off (or paused) past its timeout learns that it lost its session -- and its
leadership -- late. That is the zombie every fencing rule is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quorapay.core.coordinator import (
    ConnectionResumed,
    ConnectionSuspended,
    Event,
    Exists,
    Get,
    Replied,
    Request,
    RetryDue,
    SessionExpired,
    SessionStarted,
    WatchFired,
    ZkError,
)
from quorapay.sim.network import Network
from quorapay.sim.process import Process
from quorapay.sim.world import World
from quorapay.sim.zk_service import ZK, SimZooKeeper

CHECK_INTERVAL = 0.05
RECONNECT_INTERVAL = 0.3
RETRY_INTERVAL = 1.0  # the real driver sends RetryDue about this often


class SimZkClient:
    def __init__(self, world: World, network: Network, service: SimZooKeeper, process: Process,
                 timeout: float, on_event: Callable[[Event], None]) -> None:
        self._world = world
        self._network = network
        self._service = service
        self._process = process  # the node process this client lives in (and dies with)
        self._incarnation = process.incarnation
        self.endpoint = process.name
        self._timeout = timeout
        self._on_event = on_event
        self.session = 0
        self.connection = 0  # counts connections: requests and replies belong to one
        self.connected = False
        self._last_contact = 0.0
        self._waiting: dict[int, Request] = {}
        self._watching: set[str] = set()  # paths watched on the current connection

    def start(self) -> None:
        self._send(self._service.open_session, self, self._timeout)
        self._process.schedule(CHECK_INTERVAL, self._check)
        self._process.schedule(self._timeout / 3, self._ping)
        self._process.schedule(RETRY_INTERVAL, self._retry_due)

    def _retry_due(self) -> None:
        self._emit(RetryDue())
        self._process.schedule(RETRY_INTERVAL, self._retry_due)

    def _send(self, fn: Callable[..., Any], *args: Any) -> None:
        self._network.send(self.endpoint, ZK, fn, *args)

    def receive(self, handler: Callable[..., Any], *args: Any) -> None:
        """What the service sends lands here: only this incarnation, and not while paused."""
        self._process.call(self._incarnation, handler, *args)

    def _emit(self, event: Event) -> None:
        self._on_event(event)

    # ------------------------------------------------------------------ requests

    def request(self, request: Request) -> None:
        if not self.connected:  # kazoo fails calls at once while disconnected
            self._process.schedule(0, self._emit,
                                   Replied(id=request.id, error=ZkError.CONNECTION_LOSS))
            return
        self._waiting[request.id] = request
        if isinstance(request.op, Get | Exists) and request.op.watch:
            self._watching.add(request.op.path)
        self._send(self._service.request, self, self.session, self.connection, request)

    def replied(self, connection: int, request_id: int, value: Any, error: ZkError | None
                ) -> None:
        if connection == self.connection and self._waiting.pop(request_id, None) is not None:
            self._last_contact = self._world.now
            self._emit(Replied(id=request_id, value=value, error=error))

    def watch_fired(self, connection: int, path: str) -> None:
        if connection == self.connection and path in self._watching:
            self._watching.discard(path)
            self._emit(WatchFired(path=path))

    # ------------------------------------------------------------------ the session

    def session_opened(self, session: int) -> None:
        if self.session:
            return  # a late answer to an earlier attempt; we have a session
        self.connection += 1
        self.session, self.connected, self._last_contact = session, True, self._world.now
        self._emit(SessionStarted(session=session, token=f"{self._world.rng.getrandbits(48):x}"))

    def pong(self, session: int) -> None:
        if session == self.session:
            self._last_contact = self._world.now

    def _ping(self) -> None:
        if self.connected:
            self._send(self._service.ping, self, self.session)
        self._process.schedule(self._timeout / 3, self._ping)

    def _check(self) -> None:
        if self.connected and self._world.now - self._last_contact > self._timeout * 2 / 3:
            self._lose_connection()
        self._process.schedule(CHECK_INTERVAL, self._check)

    def _lose_connection(self) -> None:
        self.connected = False
        self.connection += 1
        self._emit(ConnectionSuspended())
        for request_id in sorted(self._waiting):
            self._emit(Replied(id=request_id, error=ZkError.CONNECTION_LOSS))
        self._waiting.clear()
        for path in sorted(self._watching):  # kazoo's NONE event: the watch is gone
            self._emit(WatchFired(path=path))
        self._watching.clear()
        self._process.schedule(RECONNECT_INTERVAL, self._try_reconnect, self.session)

    def _try_reconnect(self, session: int) -> None:
        if self.connected or session != self.session:
            return
        self._send(self._service.reconnect, self, session)
        self._process.schedule(RECONNECT_INTERVAL, self._try_reconnect, session)

    def reconnected(self, session: int, alive: bool) -> None:
        if session != self.session:
            return
        if alive:
            if not self.connected:
                self.connection += 1
                self.connected, self._last_contact = True, self._world.now
                self._emit(ConnectionResumed())
            return
        self.connected, self.session = False, 0
        self._waiting.clear()
        self._emit(SessionExpired())
        self._send(self._service.open_session, self, self._timeout)
