"""Process faults of a local cluster: kill, restart, pause and resume nodes; kill and restart
ZooKeeper servers. Every process is found by its pid (see quorapay.cluster.processes)."""

from __future__ import annotations

import signal
from pathlib import Path

from quorapay.chaos.network import ChaosError
from quorapay.cluster import supervisor, zookeeper
from quorapay.config import ClusterConfig, NodeConfig


async def resolve(cluster: ClusterConfig, target: str) -> NodeConfig:
    """A node id, or "leader": the node serving as leader now."""
    if target != "leader":
        return cluster.node(target)
    leader = supervisor.current_leader(await supervisor.statuses(cluster))
    if leader is None:
        raise ChaosError("no leader is serving (see `quorapay status`)")
    return cluster.node(leader.node)


def kill(cluster: ClusterConfig, node: NodeConfig) -> int:
    pid = supervisor.node_process(cluster, node).signal(signal.SIGKILL)
    if pid is None:
        raise ChaosError(f"{node.id} is not running")
    return pid


def pause(cluster: ClusterConfig, node: NodeConfig) -> int:
    pid = supervisor.node_process(cluster, node).signal(signal.SIGSTOP)
    if pid is None:
        raise ChaosError(f"{node.id} is not running")
    return pid


def resume(cluster: ClusterConfig, node: NodeConfig) -> int:
    pid = supervisor.node_process(cluster, node).signal(signal.SIGCONT)
    if pid is None:
        raise ChaosError(f"{node.id} is not running")
    return pid


def restart(cluster: ClusterConfig, node: NodeConfig) -> int:
    """Start a node that is not running (its ports and data as before)."""
    process = supervisor.node_process(cluster, node)
    if process.pid() is not None:
        raise ChaosError(f"{node.id} is running (kill it first, or use `quorapay up`)")
    return process.start(supervisor.node_argv(cluster, node))


def paused(cluster: ClusterConfig, node: NodeConfig) -> bool:
    pid = supervisor.node_process(cluster, node).pid()
    if pid is None:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def zk_server(cluster: ClusterConfig, server: int | None) -> int:
    if cluster.zookeeper.mode != "local":
        raise ChaosError("ZooKeeper faults need a local ZooKeeper (zookeeper.mode = \"local\")")
    chosen = server or 1
    if chosen not in zookeeper.servers(cluster):
        raise ChaosError(f"no ZooKeeper server {chosen} (this cluster runs "
                         f"{cluster.zookeeper.servers})")
    return chosen


def zk_kill(cluster: ClusterConfig, server: int | None) -> int:
    chosen = zk_server(cluster, server)
    pid = zookeeper.tracked(cluster, chosen).signal(signal.SIGKILL)
    if pid is None:
        raise ChaosError(f"ZooKeeper server {chosen} is not running")
    return chosen


def zk_restart(cluster: ClusterConfig, server: int | None) -> int:
    chosen = zk_server(cluster, server)
    if not zookeeper.start_server(cluster, chosen):
        raise ChaosError(f"ZooKeeper server {chosen} is running")
    return chosen
