"""Runs the sans-IO Coordinator against a real ZooKeeper, through kazoo.

kazoo runs its own threads. Everything it reports -- connection states, operation completions,
watch notifications -- crosses into trio through the trio token with `run_sync_soon`, which never
blocks kazoo's thread; no kazoo call blocks the event loop (every operation uses kazoo's async
API). All decisions are `quorapay.core.coordinator`'s; this module only performs its requests and
hands its replica inputs to the driver.

Access: the session authenticates with the cluster's ZooKeeper digest credential, and every znode
it creates carries an ACL giving that credential, and nobody else, every right -- except the
parent `/quorapay`, shared by the clusters of one ensemble, where anyone may create and read
(each cluster's own subtree is still closed to the others). A refusal (NoAuth) is reported as
what it is and retried, never mistaken for a lost connection.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, assert_never

import trio
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.protocol.states import WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_acl, make_digest_acl

from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.coordinator import (
    ClaimEpoch,
    ClaimRequested,
    ConnectionResumed,
    ConnectionSuspended,
    CoordinationNotice,
    CoordinationWarning,
    Coordinator,
    Create,
    Delete,
    DeposeRequested,
    EligibilityChanged,
    EnsurePath,
    EpochSeen,
    Event,
    Exists,
    Get,
    GetChildren,
    RelinquishRequested,
    Replied,
    Request,
    RetryDue,
    SessionExpired,
    SessionStarted,
    Stat,
    WatchFired,
    ZkError,
)
from quorapay.core.ready import LeadershipEnded, LeaderSilent
from quorapay.core.types import Epoch
from quorapay.core.znodes import Layout, LeaderInfo
from quorapay.transport.address import websocket_url

log = logging.getLogger(__name__)
_WAIT_LOG_INTERVAL = 5.0
_ERRORS: tuple[tuple[type[Exception], ZkError], ...] = (
    (NoNodeError, ZkError.NO_NODE),
    (NodeExistsError, ZkError.NODE_EXISTS),
    (BadVersionError, ZkError.BAD_VERSION),
    (SessionExpiredError, ZkError.SESSION_EXPIRED),
    (ConnectionLoss, ZkError.CONNECTION_LOSS),
    (ConnectionClosedError, ZkError.CONNECTION_LOSS),
    (NoAuthError, ZkError.NO_AUTH),
)
RETRY_SECONDS = 1.0  # how often the coordinator retries what failed unexpectedly


def cluster_acls(credential: tuple[str, str] | None) -> tuple[list[ACL] | None, list[ACL]]:
    """(the ACL of every znode the cluster creates, the ACL of the shared parent). Without a
    credential (an insecure benchmark): ZooKeeper's default, open to all."""
    if credential is None:
        return None, [make_acl("world", "anyone", all=True)]
    user, password = credential
    ours = make_digest_acl(user, password, all=True)
    return [ours], [ours, make_acl("world", "anyone", read=True, create=True)]


class Coordination:
    def __init__(self, cluster: ClusterConfig, node: NodeConfig,
                 inputs: trio.MemorySendChannel[Any], epoch_floor: Callable[[], Epoch], *,
                 credential: tuple[str, str] | None) -> None:
        self._cluster = cluster
        self._hosts = node.routes.get("zookeeper", cluster.zookeeper.connect_string)
        self._inputs = inputs  # the driver's input channel (replica inputs only)
        self._epoch_floor = epoch_floor
        self._credential = credential
        self._acl, self._shared_acl = cluster_acls(credential)
        self.coordinator = Coordinator(
            cluster=cluster.name, node=node.id,
            peer_url=websocket_url(node.peer_address, tls=cluster.security.tls),
            client_url=cluster.client_url(node), members=cluster.node_ids)
        # kazoo's reports and the driver's requests: rare, must never be dropped or block
        self._events_send, self._events = trio.open_memory_channel[Event](float("inf"))
        self._token: trio.lowlevel.TrioToken | None = None
        self._zk: KazooClient | None = None
        self._session = 0
        self._audited = 0  # the session whose ACLs were audited
        self._connected = trio.Event()
        self.last_warning: str | None = None  # the latest CoordinationWarning, for status

    @property
    def state(self) -> str:
        return self.coordinator.state.value

    @property
    def zk_leader(self) -> LeaderInfo | None:
        return self.coordinator.zk_leader

    def relinquish(self, ended: LeadershipEnded) -> None:
        """Called by the driver: give up the leadership of an epoch (ignored if already gone),
        for the node it names in a switchover."""
        self._events_send.send_nowait(RelinquishRequested(epoch=ended.epoch,
                                                          handover_to=ended.handover_to))

    def claim(self, epoch: Epoch) -> None:
        """Called by the driver: the leader of `epoch` handed leadership to this node."""
        self._events_send.send_nowait(ClaimRequested(epoch=epoch))

    def depose(self, silent: LeaderSilent) -> None:
        """Called by the driver: a majority heard nothing from the leader of an epoch."""
        self._events_send.send_nowait(DeposeRequested(epoch=silent.epoch, node=silent.leader,
                                                      agreeing=silent.agreeing))

    def set_eligible(self, eligible: bool) -> None:
        """Called by the driver: stand for election again, or not (a clock alarm)."""
        self._events_send.send_nowait(EligibilityChanged(eligible=eligible))

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then keep this node in the election until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        auth = [("digest", ":".join(self._credential))] if self._credential else None
        zk = KazooClient(hosts=self._hosts,
                         timeout=self._cluster.zookeeper.session_timeout,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
                         auth_data=auth, default_acl=self._acl,
                         logger=logging.getLogger("kazoo.client"))
        self._zk = zk
        zk.add_listener(self._on_state)
        zk.start_async()
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._report_while_connecting)
                nursery.start_soon(self._retry_periodically)
                async for event in self._events:
                    await self._step(event)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_stop, zk)

    async def _step(self, event: Event) -> None:
        self.coordinator.step(EpochSeen(epoch=self._epoch_floor()))
        if isinstance(event, SessionStarted | ConnectionResumed):
            self._connected.set()
        for output in self.coordinator.step(event):
            if isinstance(output, Request):
                self._perform(output)
            elif isinstance(output, CoordinationWarning):
                log.warning("ZooKeeper: %s", output.message)
                self.last_warning = output.message
            elif isinstance(output, CoordinationNotice):
                log.warning("ZooKeeper: %s", output.message)
            else:
                await self._inputs.send(output)

    async def _retry_periodically(self) -> None:
        while True:
            await trio.sleep(RETRY_SECONDS)
            self._events_send.send_nowait(RetryDue())
            if self._credential is not None and self._audited != self._session and \
                    self.coordinator.state.value == "CONNECTED":
                self._audited = self._session
                self._audit_acls()

    # ------------------------------------------------------------------ ACLs

    def _audit_acls(self) -> None:
        """Once per session: the cluster's znodes must carry our ACL, and nobody else's. Fix
        what does not (znodes made before the cluster had a credential, or pre-made by someone
        else with an open ACL); report what cannot be fixed."""
        assert self._zk is not None
        assert self._acl is not None
        layout = Layout(self._cluster.name)  # (the shared parent may be another cluster's)
        for path in (layout.root, layout.members, layout.election, layout.epoch):
            self._zk.get_acls_async(path).rawlink(
                partial(self._soon_result, self._check_acl, path, self._acl))

    def _soon_result(self, then: Callable[..., None], *args: Any) -> None:
        """kazoo's thread: hand `then(*args)` to trio (the async result is the last arg)."""
        self._soon(then, *args)

    def _check_acl(self, path: str, acl: list[ACL], result: Any) -> None:
        try:
            found, _ = result.get_nowait()
        except NoNodeError:
            return
        except KazooException as exc:
            self._warn_zk(f"cannot read the ACL of {path}: {exc!r}")
            return
        if set(found) == set(acl):
            return
        self._warn_zk(f"{path} had the ACL {_shown_acl(found)}, not the cluster's: setting it")
        assert self._zk is not None
        self._zk.set_acls_async(path, acl).rawlink(
            partial(self._soon_result, self._acl_set, path))

    def _acl_set(self, path: str, result: Any) -> None:
        try:
            result.get_nowait()
        except KazooException as exc:
            self._warn_zk(f"cannot set the ACL of {path} ({exc!r}): someone else controls it; "
                          "its contents are untrusted")

    def _warn_zk(self, message: str) -> None:
        log.warning("ZooKeeper: %s", message)
        self.last_warning = message

    async def _report_while_connecting(self) -> None:
        while not self._connected.is_set():
            with trio.move_on_after(_WAIT_LOG_INTERVAL):
                await self._connected.wait()
            if not self._connected.is_set():
                log.warning("cannot reach ZooKeeper at %s yet; still trying", self._hosts)

    # ------------------------------------------------------------------ from kazoo's threads

    def _soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run fn(*args) in trio, from any thread, without blocking (kazoo's threads)."""
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):  # the node is shutting down
            self._token.run_sync_soon(fn, *args)

    def _on_state(self, state: str) -> None:  # kazoo thread: must not block
        session = self._zk.client_id[0] if self._zk is not None and self._zk.client_id else 0
        self._soon(self._on_state_in_trio, state, session)

    def _on_state_in_trio(self, state: str, session: int) -> None:
        log.info("ZooKeeper connection %s -> %s", self.coordinator.state.value, state)
        if state == KazooState.CONNECTED:
            if session != self._session:
                self._session = session
                self._ensure_shared_parent()
                event: Event = SessionStarted(session=session, token=uuid.uuid4().hex[:12])
            else:
                event = ConnectionResumed()
        elif state == KazooState.SUSPENDED:
            event = ConnectionSuspended()
        else:
            event = SessionExpired()
        self._events_send.send_nowait(event)

    def _on_watch(self, path: str, event: WatchedEvent) -> None:  # kazoo thread: must not block
        # Any event ends the watch, including kazoo's NONE event (no path) on a connection loss:
        # kazoo drops its watches then and does not re-register them when it reconnects (kazoo
        # issue #151), so the coordinator must look again -- which re-registers the watch.
        self._soon(self._events_send.send_nowait, WatchFired(path=path))

    def _ensure_shared_parent(self) -> None:
        """Create /quorapay (shared by every cluster of the ensemble) before the coordinator's
        first request, which kazoo sends after this on the same connection."""
        assert self._zk is not None
        parent = Layout(self._cluster.name).parent
        self._zk.create_async(parent, acl=self._shared_acl).rawlink(lambda _: None)

    # ------------------------------------------------------------------ performing requests

    def _perform(self, request: Request) -> None:
        zk = self._zk
        assert zk is not None
        op = request.op
        watch = partial(self._on_watch, op.path) if isinstance(op, Get | Exists) and op.watch \
            else None
        match op:
            case EnsurePath(path=path):
                pending = zk.ensure_path_async(path)
            case Create(path=path, data=data, ephemeral=ephemeral, sequential=sequential):
                pending = zk.create_async(path, data, ephemeral=ephemeral, sequence=sequential)
            case Get(path=path):
                pending = zk.get_async(path, watch=watch)
            case GetChildren(path=path):
                pending = zk.get_children_async(path)
            case Exists(path=path):
                pending = zk.exists_async(path, watch=watch)
            case Delete(path=path, version=version):
                pending = zk.delete_async(path, version=version)
            case ClaimEpoch():
                txn = zk.transaction()
                txn.set_data(op.epoch_path, op.epoch_data, version=op.epoch_version)
                txn.create(op.leader_path, op.leader_data, ephemeral=True)
                pending = txn.commit_async()
            case _:
                assert_never(op)
        pending.rawlink(lambda result: self._soon(self._complete, request, result))

    def _complete(self, request: Request, result: Any) -> None:
        try:
            value = _translate(request, result.get_nowait())
            reply = Replied(id=request.id, value=value)
        except KazooException as exc:
            reply = Replied(id=request.id, error=_error_of(exc))
        self._events_send.send_nowait(reply)


def _translate(request: Request, value: Any) -> Any:
    """kazoo's result -> the coordinator's: Stat instead of ZnodeStat, tuples, None."""
    match request.op:
        case Get():
            data, stat = value
            return data, _stat(stat)
        case Exists():
            return None if value is None else _stat(value)
        case GetChildren():
            return tuple(value)
        case Create():
            return value
        case ClaimEpoch():
            failures = [r for r in value if isinstance(r, Exception)]
            if failures:  # the transaction did nothing; name the operation that failed
                decisive = [f for f in failures if isinstance(f, BadVersionError | NodeExistsError)]
                raise (decisive or failures)[0]
            return None
    return None


def _stat(stat: ZnodeStat) -> Stat:
    return Stat(version=stat.version, owner=stat.ephemeralOwner)


def _error_of(exc: KazooException) -> ZkError:
    for kind, error in _ERRORS:
        if isinstance(exc, kind):
            return error
    log.error("unexpected ZooKeeper error %r", exc)
    return ZkError.OTHER


def _shown_acl(acls: list[ACL]) -> str:
    return ", ".join(f"{a.id.scheme}:{a.id.id}:{a.perms}" for a in acls) or "none"


def _stop(zk: KazooClient) -> None:
    try:
        zk.stop()
        zk.close()
    except KazooException:
        pass
