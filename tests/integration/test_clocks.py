"""Clock skew on real nodes: order and timestamps survive failover between skewed clocks; a
strobing and a drifting follower change nothing; a leader off by more than the bound steps
down, and `status` shows the offsets measured."""

from __future__ import annotations

import json
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import trio

from quorapay.api import schema as api
from quorapay.api.timestamps import iso
from quorapay.client import Client
from quorapay.clock.overrides import clear_skews, skew_path, write_skew
from quorapay.clock.skew import ClockSkew
from quorapay.cluster import supervisor, zookeeper
from quorapay.config import ClusterConfig, load_config, render
from quorapay.core.znodes import Layout
from quorapay.security.access import cluster_client
from quorapay.verify.checks import Acknowledged, Verdict
from quorapay.workload.transfers import account_ids, setup_accounts
from tests.integration.conftest import _stopped_after, write_cluster
from tests.integration.helpers import kill, leader, verified

pytestmark = pytest.mark.integration


@pytest.fixture
def wide_cluster(zk_port: int, tmp_path: Path) -> Iterator[ClusterConfig]:
    """Clocks may be 30 s apart: nodes 10 s off still lead (the issue's failover scenario)."""
    config = write_cluster(tmp_path / "cluster.toml", name=f"it-{uuid.uuid4().hex[:10]}",
                           zk_port=zk_port)
    document = tomllib.loads(config.path.read_text())
    document["timing"]["max_clock_offset"] = 30.0
    config.path.write_text(render(document))
    yield from _stopped_after(load_config(config.path))


async def statuses(cluster: ClusterConfig) -> dict[str, api.NodeStatus]:
    found = await supervisor.statuses(cluster)
    return {n: s for n, s in found.items() if isinstance(s, api.NodeStatus)}


async def skew(cluster: ClusterConfig, node: str, skew: ClockSkew) -> None:
    """Set a node's clock fault and wait until the node runs on it."""
    write_skew(skew_path(cluster.run_dir, node), skew)
    with trio.fail_after(10):
        while True:
            status = (await statuses(cluster)).get(node)
            if status is not None and status.clock is not None and \
                    abs(status.clock.injected_offset_ms - skew.offset_ms) <= skew.strobe_ms + 50:
                return
            await trio.sleep(0.1)


async def lead_by(cluster: ClusterConfig, target: str) -> None:
    """Kill leaders (restarting each) until `target` leads: failover to a chosen node."""
    for _ in range(6):
        current = await leader(cluster)
        if current.node == target:
            return
        kill(cluster, current.node)
        with trio.fail_after(30):
            while True:
                if (await leader(cluster)).node != current.node:
                    break
                await trio.sleep(0.1)
        await supervisor.up(cluster)
    raise AssertionError(f"{target} never became leader")


async def pay(client: Client, prefix: str, count: int) -> list[tuple[Acknowledged, int, str]]:
    """Transfers one by one; each with the index and timestamp it was told."""
    ids = account_ids(4)
    told = []
    for i in range(count):
        spec = api.TransferSpec(id=f"{prefix}-{i}", debit=ids[i % 4], credit=ids[(i + 1) % 4],
                                amount=1)
        [result] = await client.submit_transfers([spec])
        assert result.status == "ok" and result.index is not None and result.timestamp
        told.append((Acknowledged(id=spec.id, debit=spec.debit, credit=spec.credit, amount=1,
                                  currency=spec.currency, status="ok"),
                     result.index, f"{result.timestamp}+{result.logical:012d}"))
    return told


def increasing(told: list[tuple[Acknowledged, int, str]]) -> bool:
    stamps = [stamp for _, _, stamp in sorted(told, key=lambda t: t[1])]
    return all(a < b for a, b in pairwise(stamps))


async def test_timestamps_increase_across_failover_between_clocks_10_s_apart(
        wide_cluster: ClusterConfig) -> None:
    cluster = wide_cluster
    await supervisor.up(cluster)
    behind = (await leader(cluster)).node
    ahead = next(n.id for n in cluster.nodes if n.id != behind)
    await skew(cluster, behind, ClockSkew(offset_ms=-10_000))
    await skew(cluster, ahead, ClockSkew(offset_ms=10_000))
    async with cluster_client(cluster, deadline=60) as client:
        await setup_accounts(client, 4)
        told = await pay(client, "behind", 10)
        await lead_by(cluster, ahead)
        ahead_from = time.time()
        told += await pay(client, "ahead", 10)
        await lead_by(cluster, behind)
        told += await pay(client, "back", 10)
    assert increasing(told)
    # the node 10 s ahead stamped by its clock; the one 10 s behind, taking over from it,
    # stamped after the log it adopted: the wall part waited, it did not go back 20 s
    stamped = {phase: [s for a, _, s in told if a.id.startswith(phase)]
               for phase in ("behind", "ahead", "back")}
    assert min(stamped["ahead"]) > _iso(ahead_from + 9)
    assert min(stamped["back"]) > _iso(ahead_from + 9)
    result = await verified(cluster, [a for a, _, _ in told])
    assert result.verdict is Verdict.VALID, result.findings
    assert "timestamps strictly increase with the index on every node" in result.checked


async def test_a_strobing_follower_and_a_drifting_one_leave_order_and_ledgers_intact(
        cluster: ClusterConfig) -> None:
    await supervisor.up(cluster)
    current = (await leader(cluster)).node
    strobing, drifting = [n.id for n in cluster.nodes if n.id != current]
    await skew(cluster, strobing, ClockSkew(strobe_ms=2_000, strobe_period_s=0.5))
    await skew(cluster, drifting, ClockSkew(drift_ppm=20_000))  # 20 ms a second
    async with cluster_client(cluster, deadline=60) as client:
        await setup_accounts(client, 4)
        told = []
        for round_ in range(4):
            told += await pay(client, f"r{round_}", 15)
            await strobe_jumped(cluster, strobing)  # the next round on the other side
    drifted = (await statuses(cluster))[drifting].clock
    assert drifted is not None and drifted.injected_offset_ms > 0
    assert increasing(told)
    clear_skews(cluster.run_dir)
    result = await verified(cluster, [a for a, _, _ in told])
    assert result.verdict is Verdict.VALID, result.findings


async def test_a_leader_off_by_more_than_the_bound_steps_down_and_status_shows_it(
        cluster: ClusterConfig) -> None:
    await supervisor.up(cluster)
    skewed = (await leader(cluster)).node
    await _cli(cluster, "chaos", "skew", skewed, "+2s")
    with trio.fail_after(20):
        while True:
            found = await statuses(cluster)
            current = supervisor.current_leader(found)
            clock = found[skewed].clock
            if current is not None and current.node != skewed and clock and clock.alarm:
                break
            await trio.sleep(0.1)
    others = [n.id for n in cluster.nodes if n.id != skewed]
    with trio.fail_after(10):  # samples from before the jump leave the window within a second
        while True:
            shown = json.loads(await _cli(cluster, "status", "--json"))["nodes"]
            views = [shown[n]["clock"]["peers"].get(skewed, {}).get("offset_ms", 0)
                     for n in others]
            if all(view > 1_000 for view in views):
                break
            await trio.sleep(0.2)
    for node in others:
        measured = shown[node]["clock"]["peers"][skewed]
        # within the round-trip bound of what was injected (+ 2 ms: readings are whole ms)
        assert abs(measured["offset_ms"] - 2_000) <= measured["error_ms"] + 2, measured
        back = shown[skewed]["clock"]["peers"][node]
        assert abs(back["offset_ms"] + 2_000) <= back["error_ms"] + 2, back
    assert shown[skewed]["clock"]["alarm"] and shown[skewed]["role"] == "follower"
    async with cluster_client(cluster, deadline=30) as client:
        await setup_accounts(client, 4)
        told = await pay(client, "t", 5)
    with trio.fail_after(10):  # it left the election queue: it will not lead while skewed
        while True:
            if not any(c.startswith(f"{skewed}__") for c in await candidates(cluster)):
                break
            await trio.sleep(0.1)
    assert (await leader(cluster)).node != skewed
    await _cli(cluster, "chaos", "heal")
    result = await verified(cluster, [a for a, _, _ in told])
    assert result.verdict is Verdict.VALID, result.findings


async def strobe_jumped(cluster: ClusterConfig, node: str) -> None:
    """Wait until a strobing node's clock has jumped to the other side of its offset."""
    async def side() -> bool:
        clock = (await statuses(cluster))[node].clock
        assert clock is not None
        return clock.injected_offset_ms > 0
    before = await side()
    with trio.fail_after(10):
        while True:
            if await side() != before:
                return
            await trio.sleep(0.05)


async def candidates(cluster: ClusterConfig) -> list[str]:
    """The election queue in ZooKeeper (candidate znode names start with the node id)."""
    def read() -> list[str]:
        zk = zookeeper.admin_client(cluster)
        zk.start(timeout=10)
        try:
            return list(zk.get_children(Layout(cluster.name).election))
        finally:
            zk.stop()
            zk.close()
    return await trio.to_thread.run_sync(read)


async def _cli(cluster: ClusterConfig, *args: str) -> str:
    done = await trio.run_process(
        [sys.executable, "-m", "quorapay", "-c", str(cluster.path), *args],
        capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _iso(seconds: float) -> str:
    return iso(int(seconds * 1000))
