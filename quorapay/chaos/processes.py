"""Process faults of a local cluster: kill, restart, pause and resume nodes; kill and restart
ZooKeeper servers. Every process is found by its pid (see quorapay.cluster.processes)."""

from __future__ import annotations

import signal
from pathlib import Path

from quorapay.chaos.network import ChaosError
from quorapay.cluster import runtime, supervisor, zookeeper
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.files import private_dir, write_private

LEADER = "leader"


async def resolve(cluster: ClusterConfig, target: str) -> NodeConfig:
    """A node id, or "leader": the node serving as leader now."""
    if target != LEADER:
        return cluster.node(target)
    leader = supervisor.current_leader(await supervisor.statuses(cluster))
    if leader is None:
        raise ChaosError("no leader is serving (see `quorapay status`)")
    return cluster.node(leader.node)


def remember(cluster: ClusterConfig, verb: str, node: NodeConfig) -> None:
    """`verb leader` chose `node`: `resume leader` / `restart leader` will mean it."""
    write_private(_chosen_path(cluster, verb), node.id)


def recall(cluster: ClusterConfig, target: str, verb: str) -> NodeConfig:
    """A node id, or "leader": the node the last `verb leader` chose."""
    if target != LEADER:
        return cluster.node(target)
    try:
        return cluster.node(_chosen_path(cluster, verb).read_text().strip())
    except FileNotFoundError:
        raise ChaosError(f"no `chaos {verb} leader` to undo: name the node") from None


def forget(cluster: ClusterConfig, verb: str) -> None:
    """The node `verb leader` chose is back: `leader` no longer means it."""
    _chosen_path(cluster, verb).unlink(missing_ok=True)


async def resolve_endpoints(cluster: ClusterConfig, names: list[str]) -> list[str]:
    """Endpoint names with "leader" replaced by the id of the node leading now."""
    if LEADER not in names:
        return names
    leader = (await resolve(cluster, LEADER)).id
    return [leader if name == LEADER else name for name in names]


def _chosen_path(cluster: ClusterConfig, verb: str) -> Path:
    return private_dir(runtime.chaos_dir(cluster)) / f"{verb}-leader-chose"


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
    """Stopped by SIGSTOP (state T; not t, a debugger's stop, which SIGCONT does not end)."""
    pid = supervisor.node_process(cluster, node).pid()
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # it exited meanwhile
    return stat.rsplit(")", 1)[1].split()[0] == "T"


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


def resume_paused(cluster: ClusterConfig) -> list[str]:
    """Resume every paused node; the ids of those resumed."""
    paused_now = [node for node in cluster.nodes if paused(cluster, node)]
    for node in paused_now:
        resume(cluster, node)
    return [node.id for node in paused_now]


def not_running(cluster: ClusterConfig) -> list[str]:
    """A line for each node and local ZooKeeper server that is not running, with its remedy."""
    lines = [f"{node.id}: not running (`quorapay chaos restart {node.id}` or `quorapay up`)"
             for node in cluster.nodes if supervisor.node_process(cluster, node).pid() is None]
    if cluster.zookeeper.mode == "local":
        lines += [f"zookeeper {server}: not running (`quorapay chaos zk restart {server}`)"
                  for server in zookeeper.servers(cluster)
                  if zookeeper.tracked(cluster, server).pid() is None]
    return lines
