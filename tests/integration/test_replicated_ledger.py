"""The replicated ledger end to end: quorum commit, minority failures, leader failover."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time

import pytest
import trio

from quorapay.api import schema as api
from quorapay.api.schema import TransferSpec
from quorapay.chaos.kill import kill_leader
from quorapay.client import ClientError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.security.access import cluster_client
from quorapay.verify.checks import Acknowledged, Verdict
from quorapay.workload.transfers import account_ids, setup_accounts
from tests.integration.conftest import SESSION_TIMEOUT
from tests.integration.helpers import kill, leader, verified

pytestmark = pytest.mark.integration


def transfers(prefix: str, count: int) -> list[TransferSpec]:
    ids = account_ids(4)
    return [TransferSpec(id=f"{prefix}-{i}", debit=ids[i % 4], credit=ids[(i + 1) % 4],
                         amount=1 + i) for i in range(count)]


def acknowledged(specs: list[TransferSpec], status: str = "ok") -> list[Acknowledged]:
    return [Acknowledged(id=s.id, debit=s.debit, credit=s.credit, amount=s.amount,
                         currency=s.currency, status=status) for s in specs]


async def test_three_node_cluster_commits_on_a_quorum_and_verifies(cluster: ClusterConfig
                                                                   ) -> None:
    report = await supervisor.up(cluster)
    assert sorted(report.started) == ["n1", "n2", "n3"]
    specs = transfers("t", 20)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
        results = await client.submit_transfers(specs)
        assert [r.status for r in results] == ["ok"] * 20
        balances = await client.balances(account_ids(4))
    assert sum(b.balance for b in balances) == 4 * 1_000_000
    result = await verified(cluster, acknowledged(specs))
    assert result.verdict is Verdict.VALID, result.findings


async def test_commits_with_one_follower_down_and_the_follower_catches_up(
        cluster: ClusterConfig) -> None:
    await supervisor.up(cluster)
    current = await leader(cluster)
    follower = next(n.id for n in cluster.nodes if n.id != current.node)
    kill(cluster, follower)
    specs = transfers("minority-down", 10)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
        assert [r.status for r in await client.submit_transfers(specs)] == ["ok"] * 10
    await supervisor.up(cluster)
    result = await verified(cluster, acknowledged(specs))
    assert result.verdict is Verdict.VALID, result.findings


async def test_with_two_nodes_down_a_write_is_unavailable_and_never_half_applied(
        cluster: ClusterConfig) -> None:
    await supervisor.up(cluster)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
    current = await leader(cluster)
    for node in cluster.nodes:
        if node.id != current.node:
            kill(cluster, node.id)
    spec = transfers("no-quorum", 1)
    async with cluster_client(cluster, deadline=4.0, attempt_timeout=2.0) as client:
        with pytest.raises(ClientError) as failure:
            await client.submit_transfers(spec)
    assert failure.value.code in ("UNAVAILABLE", "TIMEOUT")
    await supervisor.up(cluster)  # the two come back; the outcome settles one way everywhere
    result = await verified(cluster, acknowledged(spec, status="unknown"))
    assert result.verdict is Verdict.VALID, result.findings
    async with cluster_client(cluster) as client:
        found = await client.transfers([spec[0].id])
        again = await client.submit_transfers(spec)  # retrying the same id is safe
    assert again[0].status == "ok"
    if found:
        assert again[0].index == found[0].index  # it had committed: applied once, not twice


async def test_leader_kill_under_load_fails_over_and_loses_nothing(cluster: ClusterConfig
                                                                   ) -> None:
    await supervisor.up(cluster)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
    told: list[Acknowledged] = []
    specs = transfers("failover", 300)
    under_way = trio.Event()

    async def load() -> None:
        async with cluster_client(cluster, deadline=60) as client:
            for i in range(0, len(specs), 5):
                chunk = specs[i:i + 5]
                results = await client.submit_transfers(chunk)
                told.extend(acknowledged(chunk[j:j + 1], r.status)[0]
                            for j, r in enumerate(results))
                if len(told) >= 50:
                    under_way.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(load)
        with trio.fail_after(30):
            await under_way.wait()
        report = await kill_leader(cluster)
    assert report.seconds_to_commit <= SESSION_TIMEOUT + 2.0
    assert report.new_leader != report.killed and report.new_epoch > report.old_epoch
    assert len(told) == 300 and {a.status for a in told} == {"ok"}
    # a retried id is applied once: the same outcome, the same index, no second debit
    async with cluster_client(cluster) as client:
        before = await client.balances(account_ids(4))
        first = await client.transfers([specs[0].id])
        again = await client.submit_transfers(specs[:1])
        after = await client.balances(account_ids(4))
    assert again[0].status == "ok" and again[0].index == first[0].index
    assert before == after
    started = time.monotonic()
    await supervisor.up(cluster)  # the old leader restarts and catches up
    result = await verified(cluster, told)
    assert result.verdict is Verdict.VALID, result.findings
    assert time.monotonic() - started < 30


async def test_a_node_behind_the_compacted_log_catches_up_from_a_snapshot(
        compacting_cluster: ClusterConfig) -> None:
    cluster = compacting_cluster
    await supervisor.up(cluster)
    current = await leader(cluster)
    follower = next(n.id for n in cluster.nodes if n.id != current.node)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
        kill(cluster, follower)
        specs = transfers("compacted", 80)
        for i in range(0, len(specs), 2):  # 40 entries: past compact_every + compact_retain
            results = await client.submit_transfers(specs[i:i + 2])
            assert [r.status for r in results] == ["ok", "ok"]
    statuses = await supervisor.statuses(cluster)
    assert all(s.log_start > 0 for s in statuses.values() if isinstance(s, api.NodeStatus))
    await supervisor.up(cluster)  # the follower returns needing entries nobody holds
    result = await verified(cluster, acknowledged(specs))
    assert result.verdict is Verdict.VALID, result.findings
    caught_up = (await supervisor.statuses(cluster))[follower]
    # it had applied only the accounts before it died: a log starting later was installed
    assert isinstance(caught_up, api.NodeStatus) and caught_up.log_start > 5


async def test_up_fails_naming_a_node_that_cannot_start_and_a_wiped_node_catches_up(
        cluster: ClusterConfig) -> None:
    await supervisor.up(cluster)
    specs = transfers("before-damage", 20)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
        assert {r.status for r in await client.submit_transfers(specs)} == {"ok"}
    current = await leader(cluster)
    follower = next(n for n in cluster.nodes if n.id != current.node)
    kill(cluster, follower.id)
    database = follower.data_dir / "node.db"
    with trio.fail_after(10):
        while supervisor.node_process(cluster, follower).pid() is not None:  # noqa: ASYNC110
            await trio.sleep(0.05)
    db = sqlite3.connect(database)  # fold the write-ahead log in: the damage is at rest
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(database.read_bytes())
    for i in range(4096, min(len(data), 3 * 4096)):
        data[i] = (i * 7 + 3) & 0xFF
    database.write_bytes(data)
    done = await trio.run_process(
        [sys.executable, "-m", "quorapay", "-c", str(cluster.path), "up"],
        capture_stdout=True, capture_stderr=True, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 1, (done.stdout, stderr)
    assert f"node {follower.id} exited" in stderr and "Traceback" not in stderr
    assert "damaged" in stderr or "corrupt" in stderr
    shutil.rmtree(follower.data_dir)  # the operator gives it an empty data dir
    await supervisor.up(cluster)
    after = await leader(cluster)
    assert (after.node, after.epoch) == (current.node, current.epoch)  # the same leader
    result = await verified(cluster, acknowledged(specs))
    assert result.verdict is Verdict.VALID, result.findings
