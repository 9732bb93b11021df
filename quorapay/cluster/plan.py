"""The link plan of a local cluster: each node's own ports, and every link between endpoints.

When a local cluster comes up behind the chaos proxy, every connection -- node to node, node to
ZooKeeper server, client to node -- runs over a link with a port of its own; the plan records
them, in the run directory, until `down`. Nodes are given routes derived from it
(`quorapay.cluster.runtime`); the proxy forwards each link.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from quorapay.files import write_private


class LinkPlan(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # "n1-n2", "n1-zk1", "client-n1"
    a: str  # the endpoint that dials
    b: str  # the endpoint that accepts
    listen_port: int  # the proxy listens here (127.0.0.1)
    target_port: int  # ... and connects here (127.0.0.1)


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Ports chosen when the cluster came up: each node's own ports, and every link."""

    peer_ports: dict[str, int]  # node -> where it listens for peers
    client_ports: dict[str, int]  # node -> where it listens for clients (behind its proxy)
    links: tuple[LinkPlan, ...]

    def link(self, name: str) -> LinkPlan:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)


def read_plan(path: Path) -> Plan:
    return msgspec.json.decode(path.read_bytes(), type=Plan)


def write_plan(path: Path, plan: Plan) -> None:
    write_private(path, msgspec.json.encode(plan))
