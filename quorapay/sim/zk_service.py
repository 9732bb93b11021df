"""The simulated ZooKeeper service: the model server, reached over the simulated network,
expiring sessions on its own tick like a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorapay.core.coordinator import Request
from quorapay.sim.network import Network
from quorapay.sim.world import World
from quorapay.sim.zookeeper import Fired, ZooKeeperModel

if TYPE_CHECKING:
    from quorapay.sim.zk_client import SimZkClient

ZK = "zk"
SERVER_TICK = 0.25  # ZooKeeper checks for expired sessions on its own tick


class SimZooKeeper:
    def __init__(self, world: World, network: Network) -> None:
        self._world = world
        self._network = network
        self.model = ZooKeeperModel()
        self._clients: dict[int, SimZkClient] = {}  # session -> the client that holds it
        world.at(SERVER_TICK, self._expire)

    def _expire(self) -> None:
        _, fired = self.model.expire_due(self._world.now)
        self._notify(fired)
        self._world.at(SERVER_TICK, self._expire)

    def _notify(self, fired: Fired) -> None:
        for session, path in fired:
            client = self._clients.get(session)
            if client is not None:  # on the connection the client has now (if it is one)
                self._network.send(ZK, client.endpoint, client.receive, client.watch_fired,
                                   client.connection, path)

    # ------------------------------------------------------------------ what clients send

    def open_session(self, client: SimZkClient, timeout: float) -> None:
        session = self.model.open_session(self._world.now, timeout)
        self._clients[session] = client
        self._network.send(ZK, client.endpoint, client.receive, client.session_opened, session)

    def reconnect(self, client: SimZkClient, session: int) -> None:
        alive = self.model.alive(session)
        if alive:
            self.model.heard_from(session, self._world.now)
            self._clients[session] = client
        self._network.send(ZK, client.endpoint, client.receive, client.reconnected, session,
                           alive)

    def ping(self, client: SimZkClient, session: int) -> None:
        if self.model.alive(session):
            self.model.heard_from(session, self._world.now)
            self._network.send(ZK, client.endpoint, client.receive, client.pong, session)
        else:
            self._network.send(ZK, client.endpoint, client.receive, client.reconnected, session,
                               False)

    def request(self, client: SimZkClient, session: int, connection: int, request: Request
                ) -> None:
        if connection != client.connection:
            return  # sent on a connection the client has since given up: it never arrived
        self.model.heard_from(session, self._world.now)
        value, error, fired = self.model.execute(session, request.op)
        self._network.send(ZK, client.endpoint, client.receive, client.replied, connection,
                           request.id, value, error)
        self._notify(fired)
