"""ZooKeeper coordination of one node: membership, election, epochs, session states.

kazoo runs its own threads. Everything it reports -- call completions, watches, connection
states -- crosses into trio through the trio token with `run_sync_soon`, which never blocks
kazoo's thread; no kazoo call ever blocks the event loop. The election rules themselves are the
pure functions of `quorapay.core.election`.

What the replica hears: LeadershipGranted(E) once this node leads the election and has advanced
the epoch counter to E (atomically with creating the `leader` znode); CoordinationSuspended /
CoordinationResumed as the connection drops and returns with the same session; and
LeadershipRevoked when the session is LOST. When the replica gives leadership up (no majority,
newer epoch seen), `relinquish` deletes this node's leader and candidate znodes and rejoins the
election at the back of the queue.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import trio
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.retry import KazooRetry

from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.election import (
    candidate_prefix,
    next_epoch,
    own_candidate,
    predecessor,
)
from quorapay.core.inputs import (
    CoordinationResumed,
    CoordinationSuspended,
    LeadershipGranted,
    LeadershipRevoked,
)
from quorapay.core.types import Epoch
from quorapay.node import znodes
from quorapay.node.znodes import EpochRecord, Layout, LeaderInfo, MemberInfo

log = logging.getLogger(__name__)
_RETRY_DELAY = 0.1
_WAIT_LOG_INTERVAL = 5.0


class Coordination:
    def __init__(self, cluster: ClusterConfig, node: NodeConfig,
                 inputs: trio.MemorySendChannel[Any], epoch_floor: Callable[[], Epoch]) -> None:
        self._cluster = cluster
        self._node = node
        self._inputs = inputs  # the driver's input channel (Input items only)
        self._epoch_floor = epoch_floor
        self._layout = Layout(cluster.name)
        self._states_send, self._states = trio.open_memory_channel[str](float("inf"))
        # relinquish requests from the driver: rare, must never be dropped or block it
        self._relinquish_send, self._relinquish = trio.open_memory_channel[Epoch](float("inf"))
        self._connected = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._zk: KazooClient | None = None
        self.state = "CONNECTING"
        self.zk_leader: LeaderInfo | None = None
        self.granted: Epoch | None = None
        self._session_scope: trio.CancelScope | None = None

    def relinquish(self, epoch: Epoch, reason: str) -> None:
        """Called by the driver: give up the leadership of `epoch` (ignored if already gone)."""
        self._relinquish_send.send_nowait(epoch)

    # ------------------------------------------------------------------ bridge

    def _soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run fn(*args) in trio, from any thread, without blocking (kazoo's threads)."""
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):  # the node is shutting down
            self._token.run_sync_soon(fn, *args)

    def _on_state(self, state: str) -> None:  # kazoo thread: must not block
        self._soon(self._states_send.send_nowait, state)

    async def _call(self, async_result: Any) -> Any:
        done = trio.Event()
        async_result.rawlink(lambda _: self._soon(done.set))
        await done.wait()
        return async_result.get_nowait()  # returns the value or raises kazoo's exception

    def _watch(self) -> tuple[trio.Event, Callable[[object], None]]:
        fired = trio.Event()
        return fired, lambda _event: self._soon(fired.set)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then keep this node in the election until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        zk = KazooClient(hosts=self._cluster.zookeeper.connect_string,
                         timeout=self._cluster.zookeeper.session_timeout,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
                         logger=logging.getLogger("kazoo.client"))
        self._zk = zk
        zk.add_listener(self._on_state)
        zk.start_async()
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._track_states, nursery)
                nursery.start_soon(self._report_while_connecting)
                await self._run_sessions()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_stop, zk)

    async def _report_while_connecting(self) -> None:
        while not self._connected.is_set():
            with trio.move_on_after(_WAIT_LOG_INTERVAL):
                await self._connected.wait()
            if not self._connected.is_set():
                log.warning("cannot reach ZooKeeper at %s yet; still trying",
                            self._cluster.zookeeper.connect_string)

    async def _track_states(self, nursery: trio.Nursery) -> None:
        async for state in self._states:
            previous, self.state = self.state, state
            log.info("ZooKeeper connection %s -> %s", previous, state)
            if state == KazooState.CONNECTED:
                self._connected.set()
                await self._inputs.send(CoordinationResumed())
            elif state == KazooState.SUSPENDED:
                self._connected = trio.Event()
                await self._inputs.send(CoordinationSuspended())
            elif state == KazooState.LOST:
                self._connected = trio.Event()
                self.granted = None
                self.zk_leader = None
                await self._inputs.send(LeadershipRevoked())
                if self._session_scope is not None:
                    self._session_scope.cancel()

    async def _run_sessions(self) -> None:
        """One pass per ZooKeeper session; a LOST session cancels its pass."""
        while True:
            await self._connected.wait()
            with trio.CancelScope() as scope:
                self._session_scope = scope
                token = uuid.uuid4().hex[:12]  # one per session: finds our own candidate znode
                while True:
                    interrupted = expired = False
                    try:
                        await self._run_session(token)
                    except* ConnectionLoss:
                        interrupted = True
                    except* SessionExpiredError:
                        expired = True
                    if expired:
                        await trio.sleep_forever()  # LOST arrives and cancels this pass
                    if interrupted:
                        log.info("ZooKeeper connection lost mid-call; resuming the session")
                        await trio.sleep(_RETRY_DELAY)
                        await self._connected.wait()

    async def _run_session(self, token: str) -> None:
        await self._ensure_layout()
        await self._register_member()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_leader)
            await self._stand_for_election(candidate_prefix(self._node.id, token))

    # ------------------------------------------------------------------ znodes

    async def _ensure_layout(self) -> None:
        zk = self._kazoo()
        for path in (self._layout.members, self._layout.election):
            await self._call(zk.ensure_path_async(path))
        with contextlib.suppress(NodeExistsError):
            await self._call(zk.create_async(self._layout.epoch,
                                             znodes.encode(EpochRecord(epoch=Epoch(0)))))

    async def _register_member(self) -> None:
        zk = self._kazoo()
        path = self._layout.member(self._node.id)
        info = znodes.encode(MemberInfo(node=self._node.id, peer_url=self._node.peer_url,
                                        client_url=self._node.client_url))
        while True:
            try:
                await self._call(zk.create_async(path, info, ephemeral=True))
                return
            except NodeExistsError:
                _, stat = await self._call(zk.get_async(path))
                if stat.owner_session_id == zk.client_id[0]:
                    return
                # left by our previous process, whose session has not expired yet
                with contextlib.suppress(NoNodeError):
                    await self._call(zk.delete_async(path))

    async def _watch_leader(self) -> None:
        zk = self._kazoo()
        while True:
            fired, callback = self._watch()
            try:
                data, _ = await self._call(zk.get_async(self._layout.leader, watch=callback))
                self.zk_leader = znodes.decode_leader(data)
            except NoNodeError:
                self.zk_leader = None
                if await self._call(zk.exists_async(self._layout.leader, watch=callback)):
                    continue
            except (ConnectionLoss, SessionExpiredError):
                await trio.sleep(_RETRY_DELAY)
                await self._connected.wait()
                continue
            await fired.wait()

    # ------------------------------------------------------------------ election

    async def _join(self, prefix: str) -> str:
        """Our candidate znode: found if a lost reply already created it, else created."""
        zk = self._kazoo()
        children = await self._call(zk.get_children_async(self._layout.election))
        mine = own_candidate(children, prefix)
        if mine is None:
            path = await self._call(zk.create_async(f"{self._layout.election}/{prefix}",
                                                    ephemeral=True, sequence=True))
            mine = path.rsplit("/", 1)[1]
        return str(mine)

    async def _stand_for_election(self, prefix: str) -> None:
        zk = self._kazoo()
        while True:
            mine = await self._join(prefix)
            children = await self._call(zk.get_children_async(self._layout.election))
            if mine not in children:
                continue
            ahead = predecessor(children, mine)
            if ahead is None:
                await self._lead(mine)
                continue
            fired, callback = self._watch()
            if await self._call(zk.exists_async(f"{self._layout.election}/{ahead}",
                                                watch=callback)):
                log.info("waiting in the election behind %s", ahead)
                await fired.wait()

    async def _lead(self, mine: str) -> None:
        epoch = await self._claim_epoch()
        self.granted = epoch
        log.info("won the election: leading epoch %d", epoch)
        await self._inputs.send(LeadershipGranted(epoch=epoch))
        async for requested in self._relinquish:
            if requested == epoch:
                break
        log.warning("giving up leadership of epoch %d and rejoining the election", epoch)
        self.granted = None
        await self._delete_own(self._layout.leader)
        await self._delete_own(f"{self._layout.election}/{mine}")

    async def _claim_epoch(self) -> Epoch:
        """Advance the epoch counter by compare-and-set, atomically with the leader znode."""
        zk = self._kazoo()
        while True:
            data, stat = await self._call(zk.get_async(self._layout.epoch))
            epoch = next_epoch(znodes.decode_epoch(data).epoch, self._epoch_floor())
            info = LeaderInfo(node=self._node.id, epoch=epoch, peer_url=self._node.peer_url,
                              client_url=self._node.client_url)
            txn = zk.transaction()
            txn.set_data(self._layout.epoch, znodes.encode(EpochRecord(epoch=epoch)),
                         version=stat.version)
            txn.create(self._layout.leader, znodes.encode(info), ephemeral=True)
            results = await self._call(txn.commit_async())
            if not any(isinstance(r, Exception) for r in results):
                return epoch
            if isinstance(results[0], BadVersionError):
                continue
            if isinstance(results[1], NodeExistsError):
                existing = await self._existing_leader()
                if existing is not None:
                    return existing
                continue
            raise results[0] if isinstance(results[0], Exception) else results[1]

    async def _existing_leader(self) -> Epoch | None:
        """If the leader znode is ours (a lost reply), our epoch; else wait for it to go."""
        zk = self._kazoo()
        fired, callback = self._watch()
        try:
            data, stat = await self._call(zk.get_async(self._layout.leader, watch=callback))
        except NoNodeError:
            return None
        if stat.owner_session_id == zk.client_id[0]:
            return znodes.decode_leader(data).epoch
        log.info("the previous leader's znode is still there; waiting for it to go")
        await fired.wait()
        return None

    async def _delete_own(self, path: str) -> None:
        zk = self._kazoo()
        try:
            _, stat = await self._call(zk.get_async(path))
            if stat.owner_session_id == zk.client_id[0]:
                await self._call(zk.delete_async(path, version=stat.version))
        except (NoNodeError, BadVersionError):
            pass

    def _kazoo(self) -> KazooClient:
        assert self._zk is not None
        return self._zk


def _stop(zk: KazooClient) -> None:
    try:
        zk.stop()
        zk.close()
    except KazooException:
        pass
