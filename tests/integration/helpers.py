"""Small helpers for integration tests: waiting with deadlines, killing by pid."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import trio

from quorapay.api import schema as api
from quorapay.cluster import supervisor, zookeeper
from quorapay.cluster.ports import ephemeral_start, free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets
from quorapay.verify.checks import Acknowledged, Report, check
from quorapay.verify.collect import collect


async def leader(cluster: ClusterConfig) -> api.NodeStatus:
    with trio.fail_after(30):
        while True:
            found = supervisor.current_leader(await supervisor.statuses(cluster))
            if found is not None:
                return found
            await trio.sleep(0.1)


def kill(cluster: ClusterConfig, node_id: str) -> None:
    pid = supervisor.node_process(cluster, cluster.node(node_id)).signal(signal.SIGKILL)
    assert pid is not None, f"{node_id} was not running"


async def verified(cluster: ClusterConfig, acknowledged: list[Acknowledged] = ()) -> Report:
    return check(await collect(cluster, settle=20, acknowledged=list(acknowledged)))


def zookeeper_port(servers: int) -> int:
    """A base port whose client, quorum and election ports are all free."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, ephemeral_start() - 2100)  # below outgoing source ports
        ports = [base + i for i in range(servers)] + [
            base + offset + i for offset in (1000, 2000) for i in range(1, servers + 1)]
        if not any(zookeeper.port_problem(p) for p in ports):
            return base
    raise RuntimeError("no free ZooKeeper ports")


def local_cluster_file(folder: Path, *, name: str, secrets: bool = True,
                       session_timeout: float = 2.0, log_format: str = "text",
                       storage: dict[str, int] | None = None) -> ClusterConfig:
    """A local cluster (its own ZooKeeper, the chaos proxy) on free ports, with its secrets."""
    document = default_cluster(nodes=3, name=name)
    document["logging"] = {"format": log_format, "level": "INFO"}
    document["storage"].update(storage or {})
    base = zookeeper_port(1)
    document["zookeeper"].update(port=base, session_timeout=session_timeout)
    ports = free_ports(6, avoid={base, base + 1001, base + 2001})
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    (folder / "cluster.toml").write_text(render(document))
    cluster = load_config(folder / "cluster.toml")
    if secrets:
        ensure_secrets(cluster)
    return cluster
