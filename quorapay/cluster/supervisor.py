"""Start, stop and observe a local cluster: ZooKeeper servers (in local mode), the chaos proxy
that carries every link (`quorapay.cluster.runtime`), and one process per node.

`up` is idempotent: it starts whatever part of the cluster is not running -- this is how a
killed node comes back -- and returns once a leader serves and every node it started
answers; a node it started that exits instead is an error (with the node's last log line).
Pids and logs live under the run directory; a process is stopped by its pid, never by name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from quorapay.api import schema as api
from quorapay.client import ClientError
from quorapay.cluster import runtime, zookeeper
from quorapay.cluster.plan import Plan
from quorapay.cluster.processes import Tracked
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError
from quorapay.files import private_dir
from quorapay.security.access import ask_node
from quorapay.security.issue import check_owner
from quorapay.security.secrets import SecretsDir, require_cluster_secrets


class ClusterError(QuorapayError):
    """The cluster cannot be started or observed as asked."""


def node_process(cluster: ClusterConfig, node: NodeConfig) -> Tracked:
    return Tracked(name=node.id, pid_file=cluster.run_dir / "pids" / f"{node.id}.pid",
                   log_file=cluster.run_dir / "logs" / f"{node.id}.log",
                   marker=f"--config {runtime.node_config_path(cluster)} node run "
                          f"--node {node.id} ")


def node_argv(cluster: ClusterConfig, node: NodeConfig) -> list[str]:
    return [sys.executable, "-m", "quorapay", "--config", str(runtime.node_config_path(cluster)),
            "node", "run", "--node", node.id]


def proxy_process(cluster: ClusterConfig) -> Tracked:
    return Tracked(name="proxy", pid_file=cluster.run_dir / "pids" / "proxy.pid",
                   log_file=cluster.run_dir / "logs" / "proxy.log",
                   marker=f"--config {cluster.path.resolve()} chaos proxy-run ")


def proxy_argv(cluster: ClusterConfig) -> list[str]:
    return [sys.executable, "-m", "quorapay", "--config", str(cluster.path.resolve()), "chaos",
            "proxy-run"]


@dataclass(slots=True)
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    leader: str | None = None
    epoch: int | None = None


async def up(cluster: ClusterConfig, *, timeout: float = 60.0,
             on_progress: Callable[[str], None] = lambda _: None) -> UpReport:
    report = UpReport()
    refuse_old_layout(cluster)
    if not cluster.security.insecure:  # before anything starts: one clear line if missing
        require_cluster_secrets(SecretsDir(cluster.security.secrets_dir), list(cluster.node_ids),
                                cluster_file=cluster.path)
        check_owner(cluster)  # another cluster's secrets: its nodes would refuse each other
    for folder in (cluster.run_dir, *(n.data_dir for n in cluster.nodes)):
        try:
            private_dir(folder)  # made private, or tightened if an older version made it open
        except OSError as exc:
            raise ClusterError(f"cannot use {folder}: {exc.strerror or exc}") from None
    stopped = [n for n in cluster.nodes if node_process(cluster, n).pid() is None]
    report.already_running = [n.id for n in cluster.nodes if n not in stopped]
    proxy_needed = runtime.proxied(cluster) and proxy_process(cluster).pid() is None
    fresh = not runtime.plan_path(cluster).exists()
    plan = runtime.ensure_plan(cluster) if runtime.proxied(cluster) else None
    try:  # before anything starts: a failed `up` leaves nothing behind
        _check_ports(cluster, stopped, plan, proxy_needed)
    except ClusterError:
        if fresh:
            runtime.forget_plan(cluster)
        raise
    _ensure_zookeeper(cluster, report)
    if proxy_needed:
        proxy_process(cluster).start(proxy_argv(cluster))
        report.started.append("proxy")
    elif runtime.proxied(cluster):
        report.already_running.append("proxy")
    for node in stopped:
        node_process(cluster, node).start(node_argv(cluster, node))
        report.started.append(node.id)
    deadline = time.monotonic() + timeout
    on_progress("waiting for a leader")
    leader = await wait_for_leader(cluster, timeout=timeout, on_progress=on_progress)
    report.leader, report.epoch = leader.node, leader.epoch
    await wait_answering(cluster, stopped, timeout=max(deadline - time.monotonic(), 5.0))
    return report


def _check_ports(cluster: ClusterConfig, nodes: list[NodeConfig], plan: Plan | None,
                 proxy_needed: bool) -> None:
    wanted: list[tuple[str, int, str]] = []  # (host, port, whose)
    for node in nodes:
        if plan is None:
            wanted += [(node.host, node.peer_port, f"{node.id}'s peer port"),
                       (node.host, node.client_port, f"{node.id}'s client port")]
        else:
            wanted += [("127.0.0.1", plan.peer_ports[node.id], f"{node.id}'s peer port"),
                       ("127.0.0.1", plan.client_ports[node.id], f"{node.id}'s client port")]
    if plan is not None and proxy_needed:
        wanted += [("127.0.0.1", link.listen_port, f"the proxy's port for {link.name}")
                   for link in plan.links]
    problems = [f"{whose} {port} on {host} {taken}" for host, port, whose in wanted
                if (taken := zookeeper.port_problem(port, host))]
    if problems:
        raise ClusterError(f"cannot start: {'; '.join(problems)}")


def _ensure_zookeeper(cluster: ClusterConfig, report: UpReport) -> None:
    if cluster.zookeeper.mode == "external":
        if not zookeeper.reachable(cluster.zookeeper.hosts):
            raise ClusterError(f"ZooKeeper unreachable at {cluster.zookeeper.connect_string}")
        return
    started = zookeeper.start(cluster)
    for server in zookeeper.servers(cluster):
        name = "zookeeper" if cluster.zookeeper.servers == 1 else f"zookeeper {server}"
        (report.started if server in started else report.already_running).append(name)


async def wait_for_leader(cluster: ClusterConfig, *, timeout: float,
                          on_progress: Callable[[str], None] = lambda _: None
                          ) -> api.NodeStatus:
    """Poll until some node serves as leader; fail early if a started node died. A timeout
    says what the nodes last reported about ZooKeeper, if anything."""
    deadline = time.monotonic() + timeout
    found: dict[str, api.NodeStatus | str] = {}
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            process = node_process(cluster, node)
            if process.pid() is None and process.log_file.exists():
                crashed = _tail(process)
                if crashed:
                    raise ClusterError(f"node {node.id} exited: {crashed}")
        proxy = proxy_process(cluster)
        if runtime.proxied(cluster) and proxy.pid() is None and proxy.log_file.exists():
            why = _tail(proxy) or f"see {proxy.log_file}"
            raise ClusterError(f"the chaos proxy exited: {why}")
        found = await statuses(cluster)
        for status in found.values():
            if isinstance(status, api.NodeStatus) and status.serving:
                return status
        on_progress("waiting for a leader: " + ", ".join(
            f"{n} {s.role if isinstance(s, api.NodeStatus) else 'not answering'}"
            for n, s in found.items()))
        await trio.sleep(0.2)
    warnings = [f"{node} reports: {s.zookeeper_warning}" for node, s in found.items()
                if isinstance(s, api.NodeStatus) and s.zookeeper_warning]
    raise ClusterError(f"no leader serving within {timeout:g}s"
                       + (f"; {warnings[0]}" if warnings else "")
                       + f"; see the logs in {cluster.run_dir / 'logs'}")


async def wait_answering(cluster: ClusterConfig, nodes: list[NodeConfig], *,
                         timeout: float) -> None:
    """Until every one of `nodes` answers; ClusterError as soon as one of them has exited."""
    deadline = time.monotonic() + timeout
    waiting = {node.id for node in nodes}
    while waiting:
        found = await statuses(cluster)
        for node in nodes:
            if node.id not in waiting:
                continue
            if isinstance(found[node.id], api.NodeStatus):
                waiting.discard(node.id)
            elif node_process(cluster, node).pid() is None:
                why = _tail(node_process(cluster, node)) or \
                    f"see {node_process(cluster, node).log_file}"
                raise ClusterError(f"node {node.id} exited: {why}")
        if waiting and time.monotonic() > deadline:
            raise ClusterError(f"{', '.join(sorted(waiting))} started but did not answer within "
                               f"{timeout:g}s; see the logs in {cluster.run_dir / 'logs'}")
        if waiting:
            await trio.sleep(0.2)


def _tail(process: Tracked) -> str:
    """The process's last error line, if its log ends with one."""
    lines = process.log_file.read_text(errors="replace").strip().splitlines()
    return lines[-1].strip(" |") if lines and "error" in lines[-1].lower() else ""


async def statuses(cluster: ClusterConfig, *, timeout: float = 2.0
                   ) -> dict[str, api.NodeStatus | str]:
    """Every node's status, or why it could not be read, asked concurrently."""
    found: dict[str, api.NodeStatus | str] = {}

    async def ask(node: NodeConfig) -> None:
        try:
            response = await ask_node(cluster, node, api.Status(), timeout=timeout)
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


def refuse_old_layout(cluster: ClusterConfig) -> None:
    """ClusterError if this cluster's files are still where every cluster's were before each
    got its own folder (.quorapay/run, data, secrets): starting anew would hide them."""
    folder = cluster.path.resolve().parent / ".quorapay"
    home = folder / cluster.name
    old = [folder / part for part in ("run", "data", "secrets") if (folder / part).exists()]
    uses_defaults = cluster.run_dir == home / "run" or cluster.security.secrets_dir == \
        home / "secrets" or any(n.data_dir == home / "data" / n.id for n in cluster.nodes)
    if old and uses_defaults and not home.exists():
        shown = ", ".join(str(p) for p in old)
        raise ClusterError(f"{shown}: this cluster's files from before each cluster got its own "
                           f"folder; stop it (`quorapay down` with cluster.run_dir = "
                           f"\".quorapay/run\"), then move them into {home}/ (or set "
                           "cluster.run_dir, security.secrets_dir and the data_dirs to them)")


def down(cluster: ClusterConfig) -> list[str]:
    """Stop every node, the proxy, then ZooKeeper (in local mode). Returns what was stopped."""
    refuse_old_layout(cluster)
    stopped: list[str] = [node.id for node in cluster.nodes if node_process(cluster, node).stop()]
    if proxy_process(cluster).stop(grace=5):
        stopped.append("proxy")
    if cluster.zookeeper.mode == "local":
        stopped += ["zookeeper" if cluster.zookeeper.servers == 1 else f"zookeeper {s}"
                    for s in zookeeper.stop(cluster)]
    runtime.forget_plan(cluster)
    return stopped
