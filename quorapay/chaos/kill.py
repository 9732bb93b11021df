"""Process faults: kill -9 the leader and measure how long until writes commit again."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import trio

from quorapay.chaos.network import ChaosError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.security.access import cluster_client


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
    async with cluster_client(cluster, nodes=survivors, deadline=timeout) as client:
        index = await client.barrier()
    elapsed = time.monotonic() - killed_at
    with trio.fail_after(10):
        while True:
            now_leading = supervisor.current_leader(await supervisor.statuses(cluster))
            if now_leading is not None and now_leading.node != leader.node:
                break
            await trio.sleep(0.1)
    return KillReport(killed=leader.node, pid=pid, old_epoch=leader.epoch,
                      new_leader=now_leading.node, new_epoch=now_leading.epoch,
                      seconds_to_commit=round(elapsed, 3), committed_index=index)
