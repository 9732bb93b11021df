"""The failure matrix: every row against real processes, checked by the bank checker.

Set QUORAPAY_MATRIX_OUT to a file to collect the rows' results; `demo/failure-matrix.sh`
renders them into docs/04-evaluation/failure-matrix.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quorapay.check.bank import BankOptions, describe, run_bank
from quorapay.check.checker import Verdict
from quorapay.check.matrix import RowResult, append
from quorapay.check.scenarios import ROWS, Row
from quorapay.cluster import supervisor
from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets
from tests.integration.conftest import SESSION_TIMEOUT
from tests.integration.helpers import zookeeper_port

pytestmark = pytest.mark.integration
ELECTION_TIMEOUT = 2.0

EXPECT: dict[str, Callable[[dict[str, float]], bool]] = {
    "leader kill -9 under load": lambda m: m["recovery"] <= SESSION_TIMEOUT + 2,
    "leader cut from followers, not from ZooKeeper":
        lambda m: m["stepped_down"] <= ELECTION_TIMEOUT + 1.5,
    "leader cut from ZooKeeper, not from followers":
        lambda m: m["recovery"] <= 3 * SESSION_TIMEOUT + 4,
    # clients holding a connection to the paused leader wait out their attempt timeout (6 s)
    "leader paused past its session timeout": lambda m: m["recovery"] <= 6 + 2,
    "all of ZooKeeper lost": lambda m: m["writes_refused"] == 1 and m["recovery"] <= 20,
    "corrupt record at the tail of a log": lambda m: m["refused_to_start"] == 1,
    "follower down while the log is compacted":
        lambda m: m["snapshot_installed"] == 1 and m["recovery"] <= 10,
    # the alarm needs a few probes (0.25 s apart), then the election moves on
    "leader clock skewed beyond the bound":
        lambda m: m["stepped_down"] <= ELECTION_TIMEOUT + 1.5 and m["recovery"] <= 10,
    "follower's data dir lost": lambda m: m["same_leader"] == 1 and m["catch_up"] <= 15,
    "garbage in the epoch znode":
        lambda m: m["reported"] == 1 and m["repaired"] == 1 and m["recovery"] <= 10,
    "epoch znode deleted":
        lambda m: m["reported"] == 1 and m["repaired"] == 1 and m["recovery"] <= 10,
    "epoch 2^63 in ZooKeeper at start":
        lambda m: m["nodes_up"] == 3 and m["repaired"] == 1 and m["recovery"] <= 20,
    "garbage in the leader znode":
        lambda m: m["leader_kept"] == 1 and m["reported"] == 1 and m["recovery"] <= 10,
    "leader znode squatted by a non-member":
        lambda m: m["leader_kept"] == 1 and m["recovery"] <= 10,
    "client-port flood on the leader":
        lambda m: m["leader_kept"] == 1 and m["acks_per_s_during"] > 0,
}


@pytest.fixture
def local_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ClusterConfig]:
    row: Row = request.param
    document = default_cluster(nodes=3, name="matrix")
    zk_base = zookeeper_port(row.zookeeper_servers)
    document["zookeeper"].update(port=zk_base, servers=row.zookeeper_servers,
                                 session_timeout=SESSION_TIMEOUT)
    document["timing"]["election_timeout"] = ELECTION_TIMEOUT
    document["storage"].update(row.storage)
    ports = free_ports(6, avoid={zk_base + offset + i for offset in (0, 1000, 2000)
                                 for i in range(4)})
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    (tmp_path / "cluster.toml").write_text(render(document))
    cluster = load_config(tmp_path / "cluster.toml")
    ensure_secrets(cluster)
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None
    assert supervisor.proxy_process(cluster).pid() is None


@pytest.mark.parametrize("local_cluster", ROWS, ids=[r.name for r in ROWS], indirect=True)
async def test_row(local_cluster: ClusterConfig, request: pytest.FixtureRequest) -> None:
    row: Row = request.node.callspec.params["local_cluster"]
    await supervisor.up(local_cluster)
    outcome = await run_bank(local_cluster, BankOptions(
        seconds=row.seconds, clients=4, accounts=6, nemesis=(), scenario=row.scenario,
        results=local_cluster.run_dir.parent / "results", liveness_bound=30))
    report = outcome.report
    out = os.environ.get("QUORAPAY_MATRIX_OUT")
    if out:
        append(Path(out), RowResult(
            name=row.name, how=row.how, expected=row.expected, verdict=report.verdict.value,
            measurements=outcome.measurements, acknowledged=report.stats["acknowledged_transfers"],
            faults=report.stats["faults"]))
    assert report.verdict is Verdict.VALID, describe(report)
    expectation = EXPECT.get(row.name, lambda m: m.get("recovery", 0) <= 10)
    assert expectation(outcome.measurements), outcome.measurements
