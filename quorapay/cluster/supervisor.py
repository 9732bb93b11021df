"""Start, stop and observe a local cluster: ZooKeeper (in local mode) plus one process per node.

`up` is idempotent: it starts whatever part of the cluster is not running -- this is how a
killed node comes back -- and returns once a leader serves. Pids and logs live under the run
directory; a node is stopped by its pid, never by name.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import trio

from quorapay.api import schema as api
from quorapay.client import ClientError, node_request
from quorapay.cluster import zookeeper
from quorapay.cluster.processes import Tracked
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError


class ClusterError(QuorapayError):
    """The cluster cannot be started or observed as asked."""


def node_process(cluster: ClusterConfig, node: NodeConfig) -> Tracked:
    return Tracked(name=node.id, pid_file=cluster.run_dir / "pids" / f"{node.id}.pid",
                   log_file=cluster.run_dir / "logs" / f"{node.id}.log",
                   marker=f"--config {cluster.path.resolve()} node run --node {node.id} ")


def node_argv(cluster: ClusterConfig, node: NodeConfig) -> list[str]:
    return [sys.executable, "-m", "quorapay", "--config", str(cluster.path.resolve()), "node",
            "run", "--node", node.id]


@dataclass(slots=True)
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    leader: str | None = None
    epoch: int | None = None


async def up(cluster: ClusterConfig, *, timeout: float = 60.0) -> UpReport:
    report = UpReport()
    stopped = [n for n in cluster.nodes if node_process(cluster, n).pid() is None]
    report.already_running = [n.id for n in cluster.nodes if n not in stopped]
    _check_ports(stopped)  # before anything starts: a failed `up` leaves nothing behind
    _ensure_zookeeper(cluster, report)
    for node in stopped:
        node_process(cluster, node).start(node_argv(cluster, node))
        report.started.append(node.id)
    leader = await wait_for_leader(cluster, timeout=timeout)
    report.leader, report.epoch = leader.node, leader.epoch
    return report


def _check_ports(nodes: list[NodeConfig]) -> None:
    problems = []
    for node in nodes:
        for port, what in ((node.peer_port, "peer"), (node.client_port, "client")):
            taken = zookeeper.port_problem(port, node.host)
            if taken:
                problems.append(f"{node.id}'s {what} port {port} on {node.host} {taken}")
    if problems:
        raise ClusterError(f"cannot start: {'; '.join(problems)}")


def _ensure_zookeeper(cluster: ClusterConfig, report: UpReport) -> None:
    if cluster.zookeeper.mode == "external":
        if not zookeeper.reachable(cluster.zookeeper.hosts):
            raise ClusterError(f"ZooKeeper unreachable at {cluster.zookeeper.connect_string}")
        return
    if zookeeper.start(cluster) is not None:
        report.started.append("zookeeper")
    else:
        report.already_running.append("zookeeper")


async def wait_for_leader(cluster: ClusterConfig, *, timeout: float) -> api.NodeStatus:
    """Poll until some node serves as leader; fail early if a started node died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            process = node_process(cluster, node)
            if process.pid() is None and process.log_file.exists():
                crashed = _tail(process)
                if crashed:
                    raise ClusterError(f"node {node.id} exited: {crashed}")
        for status in (await statuses(cluster)).values():
            if isinstance(status, api.NodeStatus) and status.serving:
                return status
        await trio.sleep(0.2)
    raise ClusterError(f"no leader serving within {timeout:g}s; see the logs in "
                       f"{cluster.run_dir / 'logs'}")


def _tail(process: Tracked) -> str:
    """The node's last error line, if its log ends with one."""
    lines = process.log_file.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines and "error" in lines[-1].lower() else ""


async def statuses(cluster: ClusterConfig, *, timeout: float = 2.0
                   ) -> dict[str, api.NodeStatus | str]:
    """Every node's status, or why it could not be read, asked concurrently."""
    found: dict[str, api.NodeStatus | str] = {}

    async def ask(node: NodeConfig) -> None:
        try:
            response = await node_request(node.client_url, api.Status(), timeout=timeout)
            assert response.status is not None
            found[node.id] = response.status
        except ClientError as exc:
            found[node.id] = "down" if node_process(cluster, node).pid() is None else str(exc)

    async with trio.open_nursery() as nursery:
        for node in cluster.nodes:
            nursery.start_soon(ask, node)
    return {node.id: found[node.id] for node in cluster.nodes}


def current_leader(found: dict[str, api.NodeStatus | str]) -> api.NodeStatus | None:
    """The serving leader with the highest epoch, if any."""
    leaders = [s for s in found.values() if isinstance(s, api.NodeStatus) and s.serving]
    return max(leaders, key=lambda s: s.epoch) if leaders else None


def down(cluster: ClusterConfig) -> list[str]:
    """Stop every node, then ZooKeeper (in local mode). Returns what was stopped."""
    stopped: list[str] = [node.id for node in cluster.nodes if node_process(cluster, node).stop()]
    if cluster.zookeeper.mode == "local" and zookeeper.stop(cluster):
        stopped.append("zookeeper")
    return stopped
