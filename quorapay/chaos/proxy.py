"""The chaos proxy: one trio process forwarding every link of a local cluster, faults and all.

It listens on every link's port, connects each accepted connection to the link's target and
pumps bytes both ways, obeying the fault file as it changes (polled every 50 ms):

* cut: stop reading that direction -- nothing is delivered, buffers fill, connections hang, as
  in a partition; healing delivers what waited, in order, as TCP would;
* delay: hold each chunk for the delay plus a random part of the jitter, keeping order;
* drop: each chunk kills its connection with the given probability (the bytes of a TCP stream
  cannot be dropped alone: a flaky network loses connections);
* reset: close the link's connections, and refuse new ones until healed.

No root, no netem: the proxies are the mechanism.

The proxy carries every link of the cluster in one process, so a flood on one link must not
starve the others: each link holds a bounded number of connections (a few for a node-to-node or
ZooKeeper link, more for a client link). An *established* connection -- traffic both ways, and
older than ESTABLISHED_AFTER, which no unauthenticated connection lives to be (the nodes drop
them within seconds) -- is never closed to make room: when a link is full, the quietest of the
others gives way, and when all are established the new one is refused. A flood can delay a new
connection, never take an established link away. Connecting to the target is bounded too.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import trio

from quorapay.chaos.links import DirectionFault, Faults, read_faults
from quorapay.cluster.plan import LinkPlan, Plan

log = logging.getLogger(__name__)
POLL_INTERVAL = 0.05
CHUNK = 65536
CONNECT_TIMEOUT = 5.0
PEER_LINK_CONNECTIONS = 16  # node-to-node and node-to-ZooKeeper links: one or two in use
CLIENT_LINK_CONNECTIONS = 512
ESTABLISHED_AFTER = 10.0  # seconds: twice the nodes' handshake deadline


class FaultState:
    """The current faults, with an event that fires whenever they change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.faults = Faults()
        self._changed = trio.Event()
        self._mtime = -1.0

    def direction(self, link: str, direction: str) -> DirectionFault:
        return self.faults.direction(link, direction)

    def reset(self, link: str) -> bool:
        return self.faults.on(link).reset

    async def wait_changed(self) -> None:
        await self._changed.wait()

    async def watch(self) -> None:
        while True:
            try:
                mtime = self._path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if mtime != self._mtime:
                self._mtime = mtime
                self.faults = read_faults(self._path)
                self._changed.set()
                self._changed = trio.Event()
            await trio.sleep(POLL_INTERVAL)


class _Connection:
    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.opened = self.last_active = trio.current_time()
        self.directions: set[str] = set()  # the directions that carried bytes

    def established(self, now: float, after: float) -> bool:
        return len(self.directions) == 2 and now - self.opened >= after


class LinkProxy:
    def __init__(self, link: LinkPlan, state: FaultState, rng: random.Random, *,
                 capacity: int | None = None, established_after: float = ESTABLISHED_AFTER
                 ) -> None:
        self._link = link
        self._state = state
        self._rng = rng
        self._open: set[_Connection] = set()
        self._capacity = capacity or (CLIENT_LINK_CONNECTIONS if link.a == "client"
                                      else PEER_LINK_CONNECTIONS)
        self._established_after = established_after
        self.evicted = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(self._link.listen_port, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reset_on_demand)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    async def _reset_on_demand(self) -> None:
        while True:
            if self._state.reset(self._link.name):
                for connection in list(self._open):
                    connection.scope.cancel()
            await self._state.wait_changed()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self._state.reset(self._link.name):
                return  # refused
            with trio.CancelScope() as scope:
                connection = self._admit(scope)
                if connection is None:
                    return  # refused: every slot holds an established connection
                try:
                    await self._forward(client, connection)
                finally:
                    self._open.discard(connection)

    async def _forward(self, client: trio.SocketStream, connection: _Connection) -> None:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                server = await trio.open_tcp_stream("127.0.0.1", self._link.target_port)
        except (OSError, trio.TooSlowError):
            return  # the target is down or slow: so is the connection
        async with server, trio.open_nursery() as nursery:
            a, b = self._link.a, self._link.b
            nursery.start_soon(self._pump, client, server, f"{a}>{b}", connection)
            nursery.start_soon(self._pump, server, client, f"{b}>{a}", connection)

    def _admit(self, scope: trio.CancelScope) -> _Connection | None:
        """A slot for a new connection, or None (the link is full of established ones)."""
        if len(self._open) >= self._capacity:
            now = trio.current_time()
            others = [c for c in self._open if not c.established(now, self._established_after)]
            if not others:
                return None
            quietest = min(others, key=lambda c: c.last_active)
            self._open.discard(quietest)
            quietest.scope.cancel()
            self.evicted += 1
            if self.evicted % 100 == 1:
                log.warning("link %s full (%d connections): closed the quietest new one for a "
                            "newer (%d so far)", self._link.name, self._capacity, self.evicted)
        connection = _Connection(scope)
        self._open.add(connection)
        return connection

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, direction: str,
                    connection: _Connection) -> None:
        name = self._link.name
        last = 0.0
        try:
            while True:
                await self._while_cut(name, direction)
                data = await source.receive_some(CHUNK)
                if not data:
                    break
                connection.last_active = trio.current_time()
                connection.directions.add(direction)
                fault = self._state.direction(name, direction)
                if fault.drop and self._rng.random() < fault.drop:
                    break
                if fault.delay_ms or fault.jitter_ms:
                    wait = (fault.delay_ms + self._rng.uniform(0, fault.jitter_ms)) / 1000
                    last = max(last, trio.current_time() + wait)
                    await trio.sleep_until(last)
                    await self._while_cut(name, direction)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        connection.scope.cancel()  # one side is done: so is the connection

    async def _while_cut(self, name: str, direction: str) -> None:
        while self._state.direction(name, direction).cut:
            await self._state.wait_changed()


async def run_proxy(plan: Plan, faults: Path, *, seed: int = 0,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    state = FaultState(faults)
    rng = random.Random(seed)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(state.watch)
        for link in plan.links:
            await nursery.start(LinkProxy(link, state, rng).serve)
        log.info("proxying %d links", len(plan.links))
        task_status.started()
