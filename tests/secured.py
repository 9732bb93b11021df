"""Test clusters with their secrets: every test runs with security on, as users do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets


def secured_cluster(folder: Path, *, name: str = "quorapay-test", nodes: int = 3,
                    **sections: dict[str, Any]) -> ClusterConfig:
    """A cluster file in `folder` with free ports and a secrets dir of its own, created."""
    document = default_cluster(nodes=nodes, name=name)
    for section, values in sections.items():
        document[section].update(values)
    ports = free_ports(2 * nodes, avoid={document["zookeeper"]["port"]})  # (found in a run)
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.toml").write_text(render(document))
    cluster = load_config(folder / "cluster.toml")
    ensure_secrets(cluster)
    return cluster
