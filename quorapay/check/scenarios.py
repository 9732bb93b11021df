"""The failure matrix: scripted faults injected into a running bank test, with the outcome each
must have and the recovery time measured. `tests/integration/test_failure_matrix.py` runs every
row against real processes and checks the history; `quorapay.check.matrix` renders the table.

Times are on the history's clock; faults start a few seconds into the workload, so that the
cluster is busy when they strike.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from quorapay.api import schema as api
from quorapay.chaos import network, processes
from quorapay.chaos.links import Faults, read_faults, write_faults
from quorapay.check.bank import Scenario, Stage
from quorapay.check.history import Nemesis
from quorapay.client import ClientError
from quorapay.clock.overrides import clear_skews, skew_path, write_skew
from quorapay.clock.skew import ClockSkew
from quorapay.cluster import runtime, supervisor, zookeeper
from quorapay.cluster.plan import read_plan
from quorapay.config import NodeConfig
from quorapay.security.access import cluster_client

START = 3.0  # seconds into the workload before the fault


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    name: str
    how: str  # how the fault is injected
    expected: str  # what must happen
    scenario: Scenario
    zookeeper_servers: int = 1
    seconds: float = 20.0  # of workload
    storage: dict[str, int] = field(default_factory=dict)  # [storage] settings of the cluster


# ---------------------------------------------------------------------------- helpers

async def _at(stage: Stage, moment: float) -> None:
    await trio.sleep(max(0.0, moment - stage.now()))


def _mark(stage: Stage, fault: str, phase: str, detail: str) -> None:
    stage.record(Nemesis(time=stage.now(), fault=fault, phase=phase, detail=detail))


async def _leader(stage: Stage, deadline: float = 30.0) -> NodeConfig:
    """The serving leader, waiting for one through a handover (or a slow status)."""
    with trio.fail_after(deadline):
        while (leader := await _leader_id(stage)) is None:  # noqa: ASYNC110  (another process)
            await trio.sleep(0.1)
    return stage.cluster.node(leader)


async def _leader_id(stage: Stage) -> str | None:
    """The serving leader now, or None during a handover."""
    leader = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    return None if leader is None else leader.node


async def _recovery(stage: Stage, since: float, deadline: float = 60.0) -> float:
    """Wait until writes are acknowledged again, then return the recovery time: the longest
    stretch without any acknowledged transfer, from `since` (the fault) until now."""
    with trio.fail_after(deadline):
        await stage.first_ack_after(since)
        await stage.first_ack_after(stage.now() + 1.0)  # let the stall, if any, end for sure
    return stage.stall(since, stage.now())


async def _write_time(stage: Stage, deadline: float = 30.0) -> float:
    """Seconds until a write (a barrier) commits, from now (when clients may be idle)."""
    started = time.monotonic()
    async with cluster_client(stage.cluster, deadline=deadline) as client:
        await client.barrier()
    return round(time.monotonic() - started, 3)


async def _caught_up(stage: Stage, node: NodeConfig, deadline: float = 30.0) -> float:
    """Seconds until `node` has applied everything the leader had committed when asked."""
    started = time.monotonic()
    with trio.fail_after(deadline):
        target = None
        while True:
            found = await supervisor.statuses(stage.cluster)
            if target is None:
                leader = supervisor.current_leader(found)
                target = None if leader is None else leader.commit_index
            status = found[node.id]
            if target is not None and isinstance(status, api.NodeStatus) \
                    and status.applied_index >= target:
                return round(time.monotonic() - started, 3)
            await trio.sleep(0.1)


async def _stepped_down(stage: Stage, leader: NodeConfig,
                        because: Callable[[api.NodeStatus], bool] = lambda _: True,
                        deadline: float = 30.0) -> float:
    """Seconds until `leader` no longer leads (and its status shows `because`)."""
    started = time.monotonic()
    with trio.fail_after(deadline):
        while True:
            status = (await supervisor.statuses(stage.cluster))[leader.id]
            if isinstance(status, api.NodeStatus) and status.role != "leader" \
                    and because(status):
                return round(time.monotonic() - started, 3)
            await trio.sleep(0.05)


def _faults(stage: Stage, change: Callable[..., tuple[Faults, list[str]]]) -> None:
    cluster = stage.cluster
    path = runtime.faults_path(cluster)
    faults, _ = change(read_faults(path), read_plan(runtime.plan_path(cluster)))
    write_faults(path, faults)


def _heal(stage: Stage) -> None:
    write_faults(runtime.faults_path(stage.cluster), Faults())


def _nodes(stage: Stage) -> list[str]:
    return [n.id for n in stage.cluster.nodes]


async def _a_follower(stage: Stage) -> NodeConfig:
    leader = await _leader(stage)
    return next(n for n in stage.cluster.nodes if n.id != leader.id)


# ---------------------------------------------------------------------------- the rows

async def leader_kill(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    processes.kill(stage.cluster, leader)
    _mark(stage, "kill", "start", f"kill -9 leader {leader.id}")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(2)
    processes.restart(stage.cluster, leader)
    _mark(stage, "kill", "stop", f"restarted {leader.id}")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, leader)}


async def follower_kill(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    follower = await _a_follower(stage)
    processes.kill(stage.cluster, follower)
    _mark(stage, "kill", "start", f"kill -9 follower {follower.id}")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(4)
    processes.restart(stage.cluster, follower)
    _mark(stage, "kill", "stop", f"restarted {follower.id}")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, follower)}


async def slow_follower(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader, follower = await _leader(stage), await _a_follower(stage)
    _faults(stage, lambda f, p: network.delay(f, p, leader.id, follower.id, 300, 100))
    _mark(stage, "delay", "start", f"{leader.id}>{follower.id} 300ms ±100ms")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(6)
    _heal(stage)
    _mark(stage, "delay", "stop", "healed")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, follower)}


async def leader_cut_from_followers(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    _faults(stage, lambda f, p: network.partition(f, p, _nodes(stage), [[leader.id]]))
    _mark(stage, "partition", "start", f"leader {leader.id} cut from the followers")
    cut_at = stage.now()
    stepped_down = await _stepped_down(stage, leader)
    recovery = await _recovery(stage, cut_at)
    await trio.sleep(2)
    _heal(stage)
    _mark(stage, "partition", "stop", "healed")
    return {"stepped_down": stepped_down, "recovery": recovery}


async def leader_cut_from_zookeeper(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    _faults(stage, lambda f, p: network.cut(f, p, [[leader.id], ["zk"]]))
    _mark(stage, "zk", "start", f"leader {leader.id} cut from ZooKeeper")
    cut_at = stage.now()
    with trio.fail_after(60):  # a write must commit again -- through another leader
        while (await _leader_id(stage)) in (leader.id, None):  # noqa: ASYNC110  (another process)
            await trio.sleep(0.1)
        changed_at = stage.now()
    recovery = round(changed_at - cut_at + await _recovery(stage, changed_at), 3)
    await trio.sleep(2)
    _heal(stage)
    _mark(stage, "zk", "stop", "healed")
    return {"recovery": recovery}


async def zombie_leader(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    processes.pause(stage.cluster, leader)
    _mark(stage, "pause", "start", f"SIGSTOP leader {leader.id} past its session timeout")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(max(0.0, stage.cluster.zookeeper.session_timeout + 2 - recovery))
    processes.resume(stage.cluster, leader)
    _mark(stage, "pause", "stop", f"SIGCONT {leader.id}: a zombie until it learns")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, leader)}


async def minority_partition(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    follower = await _a_follower(stage)
    _faults(stage, lambda f, p: network.partition(f, p, _nodes(stage), [[follower.id]]))
    _mark(stage, "partition", "start", f"follower {follower.id} alone in a minority")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(5)
    _heal(stage)
    _mark(stage, "partition", "stop", "healed")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, follower)}


async def flaky_links(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    nodes = _nodes(stage)
    for a in nodes:
        for b in nodes:
            if a < b:
                _faults(stage, lambda f, p, a=a, b=b: network.delay(f, p, a, b, 20, 40))
                _faults(stage, lambda f, p, a=a, b=b: network.delay(f, p, b, a, 20, 40))
                _faults(stage, lambda f, p, a=a, b=b: network.drop(f, p, a, b, 0.02))
    _mark(stage, "net", "start", "every peer link: 20ms ±40ms, 2% of chunks kill the connection")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(8)
    _heal(stage)
    _mark(stage, "net", "stop", "healed")
    return {"recovery": recovery}


async def one_zookeeper_server_lost(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    processes.zk_kill(stage.cluster, 1)
    _mark(stage, "zk", "start", "kill -9 ZooKeeper server 1 of 3")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(6)
    processes.zk_restart(stage.cluster, 1)
    _mark(stage, "zk", "stop", "restarted server 1")
    return {"recovery": recovery}


async def all_of_zookeeper_lost(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    for server in zookeeper.servers(stage.cluster):
        processes.zk_kill(stage.cluster, server)
    _mark(stage, "zk", "start", "kill -9 every ZooKeeper server")
    refused = 0.0
    try:  # writes must stop: the leader is suspended
        await _write_time(stage, deadline=6)
    except ClientError:
        refused = 1.0
    for server in zookeeper.servers(stage.cluster):
        processes.zk_restart(stage.cluster, server)
    _mark(stage, "zk", "stop", "restarted ZooKeeper")
    return {"writes_refused": refused, "recovery": await _recovery(stage, stage.now())}


async def all_nodes_killed(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    for node in stage.cluster.nodes:
        processes.kill(stage.cluster, node)
    _mark(stage, "kill", "start", "kill -9 every node")
    await trio.sleep(1)
    for node in stage.cluster.nodes:
        processes.restart(stage.cluster, node)
    _mark(stage, "kill", "stop", "restarted every node")
    return {"recovery": await _recovery(stage, stage.now())}


async def behind_compaction(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    follower = await _a_follower(stage)
    before = (await supervisor.statuses(stage.cluster))[follower.id]
    assert isinstance(before, api.NodeStatus)
    processes.kill(stage.cluster, follower)
    _mark(stage, "kill", "start", f"kill -9 follower {follower.id} at applied index "
          f"{before.applied_index}")
    recovery = await _recovery(stage, stage.now())
    with trio.fail_after(60):  # until every other node compacted past what it holds
        while True:
            found = await supervisor.statuses(stage.cluster)
            others = [s for n, s in found.items() if n != follower.id]
            if all(isinstance(s, api.NodeStatus) and s.log_start > before.last_index
                   for s in others):
                break
            await trio.sleep(0.2)
    processes.restart(stage.cluster, follower)
    _mark(stage, "kill", "stop", f"restarted {follower.id}")
    catch_up = await _caught_up(stage, follower)
    after = (await supervisor.statuses(stage.cluster))[follower.id]
    installed = isinstance(after, api.NodeStatus) and after.log_start > before.last_index
    return {"recovery": recovery, "catch_up": catch_up, "snapshot_installed": float(installed)}


async def corrupt_tail(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    follower = await _a_follower(stage)
    processes.kill(stage.cluster, follower)
    _mark(stage, "disk", "start", f"kill -9 {follower.id}, then corrupt its last log record")
    database = follower.data_dir / "node.db"
    backup = follower.data_dir.with_name(follower.data_dir.name + ".backup")
    await trio.sleep(0.5)
    shutil.copytree(follower.data_dir, backup, dirs_exist_ok=True)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE log SET payload = CAST(X'00' || substr(payload, 2) AS BLOB) "
                   "WHERE idx = (SELECT max(idx) FROM log)")
    process = supervisor.node_process(stage.cluster, follower)
    process.start(supervisor.node_argv(stage.cluster, follower))
    with trio.fail_after(30):
        while process.pid() is not None:  # noqa: ASYNC110  (another process)
            await trio.sleep(0.1)
    refused = float("corrupt log record" in process.log_file.read_text())
    recovery = await _recovery(stage, stage.now())
    shutil.rmtree(follower.data_dir)
    backup.rename(follower.data_dir)  # the operator restores the node's disk
    processes.restart(stage.cluster, follower)
    _mark(stage, "disk", "stop", f"restored {follower.id}'s data dir and restarted it")
    return {"refused_to_start": refused, "recovery": recovery,
            "catch_up": await _caught_up(stage, follower)}


async def retries_across_failover(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    async with trio.open_nursery() as nursery:
        retried = 0

        async def send(client_number: int) -> None:
            nonlocal retried
            async with cluster_client(stage.cluster, deadline=60) as client:
                transfers = [api.TransferSpec(id=f"retry-{client_number}-{i}", debit="acct-1",
                                              credit="acct-2", amount=1) for i in range(20)]
                results = await client.submit_transfers(transfers)
                retried += sum(1 for r in results if r.status == "ok")
        for number in range(8):
            nursery.start_soon(send, number)
        await trio.sleep(0.05)
        processes.kill(stage.cluster, leader)
        killed_at = stage.now()
        _mark(stage, "kill", "start", f"kill -9 leader {leader.id} with requests in flight")
    recovery = await _recovery(stage, killed_at)
    processes.restart(stage.cluster, leader)
    _mark(stage, "kill", "stop", f"restarted {leader.id}")
    return {"recovery": recovery, "acknowledged_retries": float(retried)}


async def leader_clock_skewed(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    leader = await _leader(stage)
    write_skew(skew_path(stage.cluster.run_dir, leader.id), ClockSkew(offset_ms=2_000))
    _mark(stage, "skew", "start", f"leader {leader.id} wall clock +2 s")
    skewed_at = stage.now()
    stepped_down = await _stepped_down(
        stage, leader, because=lambda s: s.clock is not None and s.clock.alarm)
    recovery = await _recovery(stage, skewed_at)
    await trio.sleep(4)
    clear_skews(stage.cluster.run_dir)
    _mark(stage, "skew", "stop", f"{leader.id} wall clock back")
    return {"stepped_down": stepped_down, "recovery": recovery,
            "catch_up": await _caught_up(stage, leader)}


async def follower_clock_strobing(stage: Stage) -> dict[str, float]:
    await _at(stage, START)
    follower = await _a_follower(stage)
    write_skew(skew_path(stage.cluster.run_dir, follower.id),
               ClockSkew(strobe_ms=2_000, strobe_period_s=0.5))
    _mark(stage, "strobe", "start", f"{follower.id} wall clock jumping ±2 s every 0.5 s")
    recovery = await _recovery(stage, stage.now())
    await trio.sleep(6)
    clear_skews(stage.cluster.run_dir)
    _mark(stage, "strobe", "stop", f"{follower.id} wall clock back")
    return {"recovery": recovery, "catch_up": await _caught_up(stage, follower)}


ROWS = (
    Row(name="leader kill -9 under load", how="`chaos kill leader`",
        expected="a new leader commits within session timeout + 2 s; nothing acknowledged lost",
        scenario=leader_kill),
    Row(name="follower kill and restart", how="`chaos kill` a follower, `chaos restart` 4 s later",
        expected="writes go on; the follower catches up", scenario=follower_kill),
    Row(name="follower behind a slow link", how="`chaos delay LEADER FOLLOWER 300ms --jitter "
        "100ms` for 6 s", expected="writes go on at the majority's pace; the follower catches "
        "up after healing", scenario=slow_follower),
    Row(name="leader cut from followers, not from ZooKeeper", how="`chaos isolate LEADER`",
        expected="the leader gives up leadership within the election timeout (2 s); another "
        "node leads", scenario=leader_cut_from_followers),
    Row(name="leader cut from ZooKeeper, not from followers", how="`chaos isolate-zk LEADER`",
        expected="the leader stops committing when suspended and steps down when its session "
        "expires; another node leads", scenario=leader_cut_from_zookeeper),
    Row(name="leader paused past its session timeout", how="`chaos pause leader`, resumed "
        "after session timeout + 2 s", expected="another node leads; the resumed zombie commits "
        "nothing (fenced by epoch) and catches up", scenario=zombie_leader),
    Row(name="minority partition", how="`chaos isolate FOLLOWER` for 5 s",
        expected="the majority goes on; the minority catches up", scenario=minority_partition),
    Row(name="delayed messages, lost connections", how="every peer link: `chaos delay` 20 ms "
        "±40 ms and `chaos drop` 0.02 for 8 s", expected="writes go on (retransmissions, "
        "duplicates ignored)", scenario=flaky_links),
    Row(name="one of three ZooKeeper servers lost", how="`chaos zk kill 1` for 6 s",
        expected="service goes on", scenario=one_zookeeper_server_lost, zookeeper_servers=3),
    Row(name="all of ZooKeeper lost", how="`chaos zk kill` every server, then restart",
        expected="writes stop, nothing diverges, service resumes when ZooKeeper is back",
        scenario=all_of_zookeeper_lost),
    Row(name="all nodes killed and restarted", how="`chaos kill` every node, restart 1 s later",
        expected="nothing acknowledged is lost; service resumes", scenario=all_nodes_killed),
    Row(name="follower down while the log is compacted", how="`chaos kill` a follower; "
        "`chaos restart` it once the others compacted past its log (`compact_every = 500`)",
        expected="it catches up through a snapshot of the ledger, then the log tail",
        scenario=behind_compaction, seconds=30.0,
        storage={"compact_every": 500, "compact_retain": 1000}),
    Row(name="corrupt record at the tail of a log", how="kill a follower, overwrite its last "
        "record's first byte, restart it", expected="detected by checksum: the node refuses "
        "to start with a clear error; restored, it catches up", scenario=corrupt_tail),
    Row(name="client retries across failover", how="8 clients with 20 transfers in flight; "
        "`chaos kill leader`", expected="each retried id is applied exactly once",
        scenario=retries_across_failover),
    Row(name="leader clock skewed beyond the bound", how="`chaos skew LEADER +2s` for 4 s "
        "after it stepped down (maximum offset 500 ms)", expected="the leader raises a clock "
        "alarm and steps down; another node leads; timestamps keep increasing with the index",
        scenario=leader_clock_skewed),
    Row(name="follower clock strobing", how="`chaos strobe FOLLOWER --amplitude 2s --period "
        "0.5s` for 6 s", expected="writes go on at the majority's pace; order and timestamps "
        "unaffected; the follower catches up", scenario=follower_clock_strobing),
)


def by_name(name: str) -> Row:
    return next(row for row in ROWS if row.name == name)


__all__ = ["ROWS", "Row", "by_name"]
