"""Failover without waiting for ZooKeeper: after kill -9 or SIGSTOP of the leader, under load, a
write commits through another node well before the old leader's session could expire (the
followers depose it), the stopped leader, resumed, follows the new epoch, and nothing
acknowledged is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from quorapay.bench.failover import run_failover
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from tests.integration.helpers import local_cluster_file, verified

pytestmark = pytest.mark.integration
SESSION = 10.0  # seconds: long, so that a takeover well inside it cannot be an expiry


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path, name="failover", session_timeout=SESSION)
    trio.run(supervisor.up, cluster)
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


@pytest.mark.parametrize("pause", [False, True], ids=["kill", "pause"])
def test_the_followers_depose_a_dead_or_stopped_leader_long_before_its_session_ends(
        local: ClusterConfig, pause: bool) -> None:
    report = trio.run(lambda: run_failover(local, rounds=2, pause=pause, clients=4))
    for takeover in report.takeovers:
        assert takeover.seconds < SESSION / 2, takeover
        assert takeover.new_leader != takeover.old_leader
        assert takeover.new_epoch > takeover.old_epoch
        assert takeover.fenced is (True if pause else None)
    assert report.valid and report.check.acknowledged > 0
    logs = "".join(p.read_text() for p in (local.run_dir / "logs").glob("n*.log"))
    assert logs.count("deposed the leader") >= len(report.takeovers)
    assert trio.run(verified, local).verdict.value == "valid"
