"""The runtime layout of a local cluster behind the chaos proxy.

When a local cluster comes up with proxies, each node listens on ports of its own, chosen then,
and reaches every peer and ZooKeeper server through a link of the proxy; clients reach it through
its client link, which listens on the node's client_port from the cluster file. The plan (every
port and link) is kept in the run directory until `down`, so a restarted node gets its ports back,
and the nodes run with a generated cluster file that says all of this (`runtime.toml`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tomli_w

from quorapay.cluster import zookeeper
from quorapay.cluster.plan import LinkPlan, Plan, read_plan, write_plan
from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, NodeConfig, load_config
from quorapay.files import write_private

CLIENT = "client"


def proxied(cluster: ClusterConfig) -> bool:
    return cluster.proxies and cluster.zookeeper.mode == "local"


def chaos_dir(cluster: ClusterConfig) -> Path:
    return cluster.run_dir / "chaos"


def plan_path(cluster: ClusterConfig) -> Path:
    return chaos_dir(cluster) / "plan.json"


def faults_path(cluster: ClusterConfig) -> Path:
    return chaos_dir(cluster) / "faults.json"


def runtime_path(cluster: ClusterConfig) -> Path:
    return cluster.run_dir / "runtime.toml"


def node_config_path(cluster: ClusterConfig) -> Path:
    """The cluster file node processes run with."""
    return runtime_path(cluster) if proxied(cluster) else cluster.path.resolve()


def zk_endpoint(server: int) -> str:
    return f"zk{server}"


def peer_link(a: str, b: str) -> str:
    """The link a pair of nodes shares (named by the dialer, the smaller id, first)."""
    low, high = sorted((a, b))
    return f"{low}-{high}"


def ensure_plan(cluster: ClusterConfig) -> Plan:
    """The plan of a running cluster, or a new one (ports chosen now) written to the run dir."""
    path = plan_path(cluster)
    if path.exists():
        return read_plan(path)
    plan = _new_plan(cluster)
    write_plan(path, plan)
    write_private(runtime_path(cluster), tomli_w.dumps(_runtime_document(cluster, plan)))
    load_config(runtime_path(cluster))  # what the nodes will read must be valid
    return plan


def forget_plan(cluster: ClusterConfig) -> None:
    for path in (plan_path(cluster), faults_path(cluster), runtime_path(cluster)):
        path.unlink(missing_ok=True)


def configured_ports(cluster: ClusterConfig) -> set[int]:
    """Every port the cluster file gives a process: they are not bound yet when a plan is made,
    so a free-looking port may still be one of them."""
    ports = {p for n in cluster.nodes for p in (n.peer_port, n.client_port)}
    for server, port in enumerate(cluster.zookeeper.ports, start=1):
        ports |= {port, zookeeper.quorum_port(cluster, server),
                  zookeeper.election_port(cluster, server)}
    return ports


def _new_plan(cluster: ClusterConfig) -> Plan:
    ids: list[str] = [n.id for n in cluster.nodes]
    free = free_ports(2 * len(ids) + len(ids) * (len(ids) - 1) // 2
                      + len(ids) * cluster.zookeeper.servers, avoid=configured_ports(cluster))
    peer_ports = {i: free.pop() for i in ids}
    client_ports = {i: free.pop() for i in ids}
    # one link per pair: the smaller id dials (PeerLinks), the larger accepts
    links = [LinkPlan(name=peer_link(a, b), a=a, b=b, listen_port=free.pop(),
                      target_port=peer_ports[b]) for a in ids for b in ids if a < b]
    for node in cluster.nodes:
        for server, port in enumerate(cluster.zookeeper.ports, start=1):
            links.append(LinkPlan(name=f"{node.id}-{zk_endpoint(server)}", a=node.id,
                                  b=zk_endpoint(server), listen_port=free.pop(),
                                  target_port=port))
        links.append(LinkPlan(name=f"{CLIENT}-{node.id}", a=CLIENT, b=node.id,
                              listen_port=node.client_port, target_port=client_ports[node.id]))
    return Plan(peer_ports=peer_ports, client_ports=client_ports, links=tuple(links))


def _runtime_document(cluster: ClusterConfig, plan: Plan) -> dict[str, Any]:
    zk = cluster.zookeeper
    return {
        "cluster": {"name": cluster.name, "run_dir": str(cluster.run_dir)},
        "zookeeper": {"mode": zk.mode, "port": zk.port, "hosts": list(zk.hosts),
                      "servers": zk.servers, "session_timeout": zk.session_timeout},
        "timing": dataclasses.asdict(cluster.timing),  # (every setting: the nodes read
        "storage": dataclasses.asdict(cluster.storage),  # this file, not the cluster's)
        "chaos": {"proxies": True},
        "security": {"secrets_dir": str(cluster.security.secrets_dir),
                     "insecure_benchmark_only": cluster.security.insecure},
        "logging": {"format": cluster.logging.format, "level": cluster.logging.level},
        "nodes": [_runtime_node(cluster, plan, node) for node in cluster.nodes],
    }


def _runtime_node(cluster: ClusterConfig, plan: Plan, node: NodeConfig) -> dict[str, Any]:
    routes: dict[str, str] = {
        peer.id: f"127.0.0.1:{plan.link(peer_link(node.id, peer.id)).listen_port}"
        for peer in cluster.nodes if node.id < peer.id}
    routes["zookeeper"] = ",".join(
        f"127.0.0.1:{plan.link(f'{node.id}-{zk_endpoint(s)}').listen_port}"
        for s in range(1, cluster.zookeeper.servers + 1))
    return {"id": node.id, "host": "127.0.0.1", "peer_port": plan.peer_ports[node.id],
            "client_port": node.client_port,
            "listen_client_port": plan.client_ports[node.id],
            "data_dir": str(node.data_dir), "routes": routes,
            "clock_offset": f"{node.clock.offset_ms}ms",
            "clock_drift": f"{node.clock.drift_ppm}ppm"}
