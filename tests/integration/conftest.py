"""Real ZooKeeper, real node processes. Everything binds 127.0.0.1 and is stopped by pid."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from quorapay.cluster import supervisor, zookeeper
from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets

SESSION_TIMEOUT = 2.0


def free_port() -> int:
    """A free port below the ephemeral range (see quorapay.cluster.ports)."""
    return free_ports(1)[0]


def write_cluster(path: Path, *, name: str, zk_port: int, nodes: int = 3,
                  mode: str = "external", storage: dict[str, int] | None = None
                  ) -> ClusterConfig:
    document = default_cluster(nodes=nodes, name=name, zookeeper_port=zk_port)
    document["storage"].update(storage or {})
    document["zookeeper"].update(mode=mode, hosts=[f"127.0.0.1:{zk_port}"],
                                 session_timeout=SESSION_TIMEOUT)
    ports = free_ports(2 * nodes, avoid={zk_port})
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    path.write_text(render(document))
    config = load_config(path)
    ensure_secrets(config)
    return config


@pytest.fixture(scope="session")
def zk_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real ZooKeeper server for the session; each test cluster has its own znode root."""
    port = free_port()
    config = write_cluster(tmp_path_factory.mktemp("zookeeper") / "cluster.toml",
                           name="zk-owner", zk_port=port, mode="local")
    zookeeper.start(config, timeout=60)
    yield port
    zookeeper.stop(config)
    assert zookeeper.tracked(config).pid() is None


@pytest.fixture
def cluster(zk_port: int, tmp_path: Path) -> Iterator[ClusterConfig]:
    yield from _stopped_after(write_cluster(
        tmp_path / "cluster.toml", name=f"it-{uuid.uuid4().hex[:10]}", zk_port=zk_port))


@pytest.fixture
def compacting_cluster(zk_port: int, tmp_path: Path) -> Iterator[ClusterConfig]:
    """A cluster whose nodes compact their logs every few entries."""
    yield from _stopped_after(write_cluster(
        tmp_path / "cluster.toml", name=f"it-{uuid.uuid4().hex[:10]}", zk_port=zk_port,
        storage={"compact_every": 20, "compact_retain": 5}))


def _stopped_after(config: ClusterConfig) -> Iterator[ClusterConfig]:
    yield config
    supervisor.down(config)
    for node in config.nodes:
        assert supervisor.node_process(config, node).pid() is None
