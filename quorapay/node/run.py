"""One node process: load its credentials, recover from disk, bind ports, then run every task in
one nursery.

Tasks: the driver loop, the peer links, the client API, the tick source and the ZooKeeper
coordination. SIGTERM / SIGINT cancel the nursery; the coordination task then closes its
ZooKeeper session, so the election moves on at once instead of after the session timeout.
Missing or unreadable credentials stop the node before it touches its data dir or a port.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import ssl
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import trio

from quorapay.api.schema import ClockStatus, NodeStatus, PeerClock, SnapshotStream
from quorapay.api.timestamps import iso
from quorapay.clock.overrides import skew_path
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError
from quorapay.core.inputs import Ticked
from quorapay.core.node_state import NodeState
from quorapay.core.replica import Replica
from quorapay.core.types import NodeId
from quorapay.logs.quiet import QuietLog
from quorapay.node.client_api import ClientApi
from quorapay.node.clock import WallClock, follow_clock_faults
from quorapay.node.coordination import Coordination
from quorapay.node.loop import Driver, DriverInput
from quorapay.node.peers import PeerLinks
from quorapay.node.roles import RoleLog
from quorapay.node.storage import Store
from quorapay.procfs import resident_bytes
from quorapay.security.secrets import SecretsDir, read_zookeeper_credential
from quorapay.security.tls import node_client_context, node_server_context

log = logging.getLogger(__name__)
INPUT_BUFFER = 4096
STALL = 0.2  # seconds: a tick this late is logged


class StartupError(QuorapayError):
    """The node cannot start: a port in use, say. Nothing was changed."""


async def bind(node: NodeConfig, port: int, what: str) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=node.host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{what} port {port} on {node.host} is already in use "
                               f"(node {node.id})") from None
        raise StartupError(f"cannot listen on {node.host}:{port} for {what}s: "
                           f"{exc.strerror}") from None


async def tick_forever(inputs: trio.MemorySendChannel[Any], seconds_per_tick: float) -> NoReturn:
    """The only place that turns seconds into core ticks (and notices a stalled loop)."""
    quiet = QuietLog(log)
    while True:
        started = trio.current_time()
        await trio.sleep(seconds_per_tick)
        await inputs.send(Ticked())
        late = trio.current_time() - started - seconds_per_tick
        if late >= STALL:
            quiet.warning("stall", "a tick came %.3f s late: the event loop was busy or the "
                                   "process was stopped (peers heard nothing meanwhile)", late)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a node proves itself with: TLS contexts for its two ports and for dialing peers,
    and its ZooKeeper credential. All None in an insecure benchmark."""

    peer_server: ssl.SSLContext | None
    peer_dial: ssl.SSLContext | None
    client_server: ssl.SSLContext | None
    zookeeper: tuple[str, str] | None


def load_credentials(cluster: ClusterConfig, node_id: str) -> Credentials:
    if cluster.security.insecure:
        log.warning("INSECURE BENCHMARK MODE (security.insecure_benchmark_only): no TLS, no "
                    "client credentials, no ZooKeeper ACLs -- anyone who can reach a port can "
                    "forge payments. Never run a real cluster like this.")
        return Credentials(None, None, None, None)
    return Credentials(
        peer_server=node_server_context(cluster, node_id, clients=False),
        peer_dial=node_client_context(cluster, node_id),
        client_server=node_server_context(cluster, node_id, clients=True),
        zookeeper=read_zookeeper_credential(SecretsDir(cluster.security.secrets_dir),
                                            cluster_file=cluster.path))


async def run_node(cluster: ClusterConfig, node_id: str) -> None:
    me = cluster.node(node_id)
    credentials = load_credentials(cluster, node_id)
    peer_listeners = await bind(me, me.peer_port, "peer")  # before touching the data dir
    client_listeners = await bind(me, me.bind_client_port, "client")
    store = Store(me.data_dir / "node.db", cluster=cluster.name, node_id=me.id,
                  cache_mb=cluster.storage.cache_mb)
    restored = store.load()
    timing = replace(cluster.timing.core(),
                     snapshot_chunk_rows=cluster.storage.snapshot_part_rows,
                     snapshot_bytes_per_tick=_bytes_per_tick(cluster))
    replica = Replica(node_id=me.id, members=cluster.node_ids, timing=timing,
                      promised_epoch=restored.promised_epoch,
                      promised_to=restored.promised_to, log=restored.log,
                      applied_index=restored.applied_index,
                      snapshot_index=restored.snapshot_index,
                      snapshot_epoch=restored.snapshot_epoch,
                      snapshot_ts=restored.snapshot_ts)
    log.info("node %s recovered: promised epoch %d, log %d..%d, applied %d", me.id,
             restored.promised_epoch, restored.snapshot_index + 1, replica.last_index,
             restored.applied_index)
    inputs_send, inputs = trio.open_memory_channel[DriverInput](INPUT_BUFFER)
    peers = PeerLinks(cluster, me, inputs_send, server_tls=credentials.peer_server,
                      dial_tls=credentials.peer_dial)
    coordination = Coordination(cluster, me, inputs_send,
                                epoch_floor=lambda: replica.highest_epoch_seen,
                                credential=credentials.zookeeper)
    state: NodeState[Any] = NodeState(replica, restored.ledger,
                                      compaction=cluster.storage.compaction())
    wall_clock = WallClock(me.clock)
    driver = Driver(state, store, send=peers.send,
                    relinquish=coordination.relinquish, wall_clock=wall_clock.read_ms,
                    eligible=coordination.set_eligible, claim=coordination.claim,
                    depose=coordination.depose,
                    roles=RoleLog(tick_seconds=cluster.timing.tick),
                    loopback=inputs_send)

    def clock_status() -> ClockStatus:
        hlc = replica.hlc
        skew = wall_clock.skew
        return ClockStatus(
            wall=iso(wall_clock.read_ms()), injected_offset_ms=wall_clock.offset_ms(),
            fault=skew.describe() if skew != type(skew)() else "",
            hlc=iso(hlc.wall_ms), hlc_logical=hlc.logical,
            max_offset_ms=cluster.timing.core().max_clock_offset_ms,
            alarm=replica.clock_alarm,
            peers={p: PeerClock(offset_ms=round(s.offset_ms, 1), error_ms=round(s.error_ms, 1))
                   for p, s in replica.clock_offsets().items()},
            hlc_ahead=replica.hlc_ahead, refusing=list(replica.refusing_messages_from),
            refused=replica.refused_messages, unadopted=replica.unadopted_timestamps)

    def status() -> NodeStatus:
        zk_leader = coordination.zk_leader
        return NodeStatus(
            node=me.id, role=replica.role.value, serving=replica.serving,
            epoch=replica.promised_epoch, leader=replica.leader or (
                zk_leader.node if zk_leader else None),
            last_index=replica.last_index, commit_index=replica.commit_index,
            applied_index=driver.applied_index, log_start=replica.log.start,
            zookeeper=coordination.state,
            zookeeper_leader=zk_leader.node if zk_leader else None, clock=clock_status(),
            tls=credentials.peer_server is not None,
            zookeeper_warning=coordination.last_warning,
            commit_wall_ms=_wall_at(replica, replica.commit_index),
            applied_wall_ms=_wall_at(replica, driver.applied_index),
            leader_contact_ms=_ms(replica.ticks_since_leader, cluster.timing.tick),
            majority_contact_ms=_ms(replica.ticks_since_majority, cluster.timing.tick),
            accounts=len(driver.ledger.accounts), transfers=driver.ledger.transfer_count,
            rss_bytes=resident_bytes(os.getpid()),
            snapshot_bytes=driver.ledger.estimated_export_bytes(),
            snapshots_sent=state.sending.started, snapshots_resumed=state.sending.resumed,
            snapshots_installed=state.receiving.installed,
            snapshot_streams={peer: SnapshotStream(index=index, parts_acknowledged=acked,
                                                   parts=parts)
                              for peer, (index, acked, parts) in state.sending.active.items()})

    def zk_leader() -> NodeId | None:
        return coordination.zk_leader.node if coordination.zk_leader else None

    api = ClientApi(cluster, inputs_send, status, zk_leader, tls=credentials.client_server)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
            nursery.start_soon(driver.run, inputs)
            await nursery.start(peers.serve, peer_listeners)
            await nursery.start(api.serve, client_listeners)
            nursery.start_soon(tick_forever, inputs_send, cluster.timing.tick)
            nursery.start_soon(follow_clock_faults, wall_clock,
                               skew_path(cluster.run_dir, me.id))
            await nursery.start(coordination.run)
            log.info("node %s serving: peers on %s, clients on %s (%s)", me.id,
                     me.peer_address, me.client_address,
                     "TLS" if credentials.peer_server else "INSECURE, no TLS")
    finally:
        store.close()
        log.info("node %s stopped", me.id)


def _bytes_per_tick(cluster: ClusterConfig) -> int:
    """storage.snapshot_mb_per_s in bytes per tick; 0: no limit."""
    rate = cluster.storage.snapshot_mb_per_s
    return max(1, round(rate * 2**20 * cluster.timing.tick)) if rate else 0


def _wall_at(replica: Replica, index: int) -> int:
    ts = replica.log.ts_at(index)
    return ts.wall_ms if ts is not None else 0


def _ms(ticks: int | None, tick: float) -> int | None:
    return None if ticks is None else round(ticks * tick * 1000)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
