"""A snapshot streamed in many parts between real processes: the link cut halfway, the stream
goes on from what the follower holds, and the follower installs the whole ledger once."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from quorapay.api import schema as api
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.security.access import ask_node, cluster_client
from quorapay.verify.checks import Verdict
from quorapay.workload.transfers import setup_accounts
from tests.integration.helpers import kill, leader, local_cluster_file, verified
from tests.integration.test_replicated_ledger import acknowledged, transfers

pytestmark = pytest.mark.integration

TRANSFERS = 20_000  # in parts of 2 rows: about 10 000 parts, a few seconds' stream


async def chaos(cluster: ClusterConfig, *args: str) -> None:
    done = await trio.run_process([sys.executable, "-m", "quorapay", "-c", str(cluster.path),
                                   "chaos", *args], capture_stdout=True, capture_stderr=True,
                                  check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)


async def status_of(cluster: ClusterConfig, node: str) -> api.NodeStatus:
    response = await ask_node(cluster, cluster.node(node), api.Status(), timeout=2)
    assert response.status is not None, response
    return response.status


async def until(cluster: ClusterConfig, node: str, what: str,
                condition: Callable[[api.NodeStatus], bool], timeout: float = 60) -> None:
    with trio.move_on_after(timeout):
        while not condition(status := await status_of(cluster, node)):  # noqa: ASYNC110
            await trio.sleep(0.02)
        return
    raise AssertionError(f"{node}: {what} not within {timeout}s: {status}")


async def test_a_multi_part_snapshot_survives_a_cut_link(tmp_path: Path) -> None:
    cluster = local_cluster_file(tmp_path, name=f"it-{uuid.uuid4().hex[:10]}", storage={
        "compact_every": 20, "compact_retain": 5, "snapshot_part_rows": 2})
    try:
        await supervisor.up(cluster)
        current = (await leader(cluster)).node
        follower = next(n.id for n in cluster.nodes if n.id != current)
        specs = transfers("streamed", TRANSFERS)
        async with cluster_client(cluster) as client:
            await setup_accounts(client, 4)
            kill(cluster, follower)
            for i in range(0, len(specs), 500):  # 40 entries: past compact_every + retain
                results = await client.submit_transfers(specs[i:i + 500])
                assert {r.status for r in results} == {"ok"}
        await supervisor.up(cluster)  # the follower returns needing entries nobody holds

        def streaming(status: api.NodeStatus) -> bool:
            stream = status.snapshot_streams.get(follower)
            return stream is not None and stream.parts_acknowledged >= 20

        await until(cluster, current, "a snapshot streamed partway", streaming)
        await chaos(cluster, "reset", current, follower)  # the link is cut, and stays down
        resumed = (await status_of(cluster, current)).snapshots_resumed
        await until(cluster, current, "the stream resent from the acknowledgement",
                    lambda s: s.snapshots_resumed > resumed)
        await chaos(cluster, "heal")
        result = await verified(cluster, acknowledged(specs))
        assert result.verdict is Verdict.VALID, result.findings
        sender, receiver = await status_of(cluster, current), await status_of(cluster, follower)
        assert sender.snapshots_sent == 1  # resumed where it broke, never begun again
        assert receiver.snapshots_installed == 1 and receiver.transfers >= TRANSFERS
        assert receiver.log_start > 5
    finally:
        supervisor.down(cluster)  # (the cluster's own ZooKeeper too)
        for node in cluster.nodes:
            assert supervisor.node_process(cluster, node).pid() is None
