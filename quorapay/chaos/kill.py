"""Process faults: kill -9 the leader and measure how long until writes commit again."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from quorapay.api import schema as api
from quorapay.chaos.network import ChaosError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.security.access import cluster_client

PROBE_EVERY = 0.01  # seconds between a probe's attempts: the measurement's resolution


@dataclass(frozen=True, slots=True, kw_only=True)
class KillReport:
    killed: str
    pid: int
    old_epoch: int
    new_leader: str
    new_epoch: int
    seconds_to_commit: float  # from the kill until a write (a barrier entry) committed again
    committed_index: int


async def kill_leader(cluster: ClusterConfig, *, timeout: float = 60.0) -> KillReport:
    found = await supervisor.statuses(cluster)
    leader = supervisor.current_leader(found)
    if leader is None:
        raise ChaosError("no leader is serving: nothing to kill (see `quorapay status`)")
    pid = supervisor.node_process(cluster, cluster.node(leader.node)).signal(signal.SIGKILL)
    if pid is None:
        raise ChaosError(f"leader {leader.node} has no process this supervisor started")
    killed_at = time.monotonic()
    survivors = [n for n in cluster.nodes if n.id != leader.node]
    index = await first_commit(cluster, survivors, timeout=timeout)
    elapsed = time.monotonic() - killed_at
    now_leading = await new_leader(cluster, leader.node)
    return KillReport(killed=leader.node, pid=pid, old_epoch=leader.epoch,
                      new_leader=now_leading.node, new_epoch=now_leading.epoch,
                      seconds_to_commit=round(elapsed, 3), committed_index=index)


async def first_commit(cluster: ClusterConfig, survivors: Sequence[NodeConfig], *,
                       timeout: float) -> int:
    """Commit a barrier through `survivors` as soon as one of them leads; its index. Tries
    every PROBE_EVERY seconds, so the time it returns is within that of the first chance."""
    async with cluster_client(cluster, nodes=survivors, deadline=timeout,
                              attempt_timeout=1.0, connect_timeout=0.5,
                              retry_delays=(PROBE_EVERY,)) as client:
        return await client.barrier()


async def new_leader(cluster: ClusterConfig, old: str, *, timeout: float = 10.0
                     ) -> api.NodeStatus:
    """The node serving as leader, once it is not `old`."""
    with trio.fail_after(timeout):
        while True:
            leading = supervisor.current_leader(await supervisor.statuses(cluster))
            if leading is not None and leading.node != old:
                return leading
            await trio.sleep(0.05)
