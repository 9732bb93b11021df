"""The failure matrix: scripted faults injected into a running bank test, with the outcome each
must have and the recovery time measured. `tests/integration/test_failure_matrix.py` runs every
row against real processes and checks the history; `quorapay.check.matrix` renders the table.

Shared steps (waiting, marking, measuring) are in `quorapay.check.staging`; the rows where
someone hostile acts -- ZooKeeper tampered with, connection floods -- in `quorapay.check.hostile`.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field

import trio

from quorapay.api import schema as api
from quorapay.chaos import network, processes
from quorapay.check import hostile
from quorapay.check.bank import Scenario, Stage
from quorapay.check.staging import (
    START,
    a_follower,
    change_faults,
    heal_links,
    mark,
    measure_recovery,
    node_ids,
    serving_leader,
    serving_leader_id,
    time_to_catch_up,
    time_to_step_down,
    time_to_write,
    wait_until,
)
from quorapay.client import ClientError
from quorapay.clock.overrides import clear_skews, skew_path, write_skew
from quorapay.clock.skew import ClockSkew
from quorapay.cluster import supervisor, zookeeper
from quorapay.security.access import cluster_client


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    name: str
    how: str  # how the fault is injected
    expected: str  # what must happen
    scenario: Scenario
    zookeeper_servers: int = 1
    seconds: float = 20.0  # of workload
    storage: dict[str, int] = field(default_factory=dict)  # [storage] settings of the cluster


# ---------------------------------------------------------------------------- the rows

async def leader_kill(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    processes.kill(stage.cluster, leader)
    mark(stage, "kill", "start", f"kill -9 leader {leader.id}")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(2)
    processes.restart(stage.cluster, leader)
    mark(stage, "kill", "stop", f"restarted {leader.id}")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, leader)}


async def follower_kill(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    follower = await a_follower(stage)
    processes.kill(stage.cluster, follower)
    mark(stage, "kill", "start", f"kill -9 follower {follower.id}")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(4)
    processes.restart(stage.cluster, follower)
    mark(stage, "kill", "stop", f"restarted {follower.id}")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, follower)}


async def slow_follower(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader, follower = await serving_leader(stage), await a_follower(stage)
    change_faults(stage, lambda f, p: network.delay(f, p, leader.id, follower.id, 300, 100))
    mark(stage, "delay", "start", f"{leader.id}>{follower.id} 300ms ±100ms")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(6)
    heal_links(stage)
    mark(stage, "delay", "stop", "healed")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, follower)}


async def leader_cut_from_followers(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    change_faults(stage, lambda f, p: network.partition(f, p, node_ids(stage), [[leader.id]]))
    mark(stage, "partition", "start", f"leader {leader.id} cut from the followers")
    cut_at = stage.now()
    stepped_down = await time_to_step_down(stage, leader)
    recovery = await measure_recovery(stage, cut_at)
    await trio.sleep(2)
    heal_links(stage)
    mark(stage, "partition", "stop", "healed")
    return {"stepped_down": stepped_down, "recovery": recovery}


async def leader_cut_from_zookeeper(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    change_faults(stage, lambda f, p: network.cut(f, p, [[leader.id], ["zk"]]))
    mark(stage, "zk", "start", f"leader {leader.id} cut from ZooKeeper")
    cut_at = stage.now()
    with trio.fail_after(60):  # a write must commit again -- through another leader
        while (await serving_leader_id(stage)) in (leader.id, None):  # noqa: ASYNC110  (another process)
            await trio.sleep(0.1)
        changed_at = stage.now()
    recovery = round(changed_at - cut_at + await measure_recovery(stage, changed_at), 3)
    await trio.sleep(2)
    heal_links(stage)
    mark(stage, "zk", "stop", "healed")
    return {"recovery": recovery}


async def zombie_leader(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    processes.pause(stage.cluster, leader)
    mark(stage, "pause", "start", f"SIGSTOP leader {leader.id} past its session timeout")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(max(0.0, stage.cluster.zookeeper.session_timeout + 2 - recovery))
    processes.resume(stage.cluster, leader)
    mark(stage, "pause", "stop", f"SIGCONT {leader.id}: a zombie until it learns")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, leader)}


async def minority_partition(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    follower = await a_follower(stage)
    change_faults(stage, lambda f, p: network.partition(f, p, node_ids(stage), [[follower.id]]))
    mark(stage, "partition", "start", f"follower {follower.id} alone in a minority")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(5)
    heal_links(stage)
    mark(stage, "partition", "stop", "healed")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, follower)}


async def flaky_links(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    nodes = node_ids(stage)
    for a in nodes:
        for b in nodes:
            if a < b:
                change_faults(stage, lambda f, p, a=a, b=b: network.delay(f, p, a, b, 20, 40))
                change_faults(stage, lambda f, p, a=a, b=b: network.delay(f, p, b, a, 20, 40))
                change_faults(stage, lambda f, p, a=a, b=b: network.drop(f, p, a, b, 0.02))
    mark(stage, "net", "start", "every peer link: 20ms ±40ms, 2% of chunks kill the connection")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(8)
    heal_links(stage)
    mark(stage, "net", "stop", "healed")
    return {"recovery": recovery}


async def one_zookeeper_server_lost(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    processes.zk_kill(stage.cluster, 1)
    mark(stage, "zk", "start", "kill -9 ZooKeeper server 1 of 3")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(6)
    processes.zk_restart(stage.cluster, 1)
    mark(stage, "zk", "stop", "restarted server 1")
    return {"recovery": recovery}


async def all_of_zookeeper_lost(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    for server in zookeeper.servers(stage.cluster):
        processes.zk_kill(stage.cluster, server)
    mark(stage, "zk", "start", "kill -9 every ZooKeeper server")
    refused = 0.0
    try:  # writes must stop: the leader is suspended
        await time_to_write(stage, deadline=6)
    except ClientError:
        refused = 1.0
    for server in zookeeper.servers(stage.cluster):
        processes.zk_restart(stage.cluster, server)
    mark(stage, "zk", "stop", "restarted ZooKeeper")
    return {"writes_refused": refused, "recovery": await measure_recovery(stage, stage.now())}


async def all_nodes_killed(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    for node in stage.cluster.nodes:
        processes.kill(stage.cluster, node)
    mark(stage, "kill", "start", "kill -9 every node")
    await trio.sleep(1)
    for node in stage.cluster.nodes:
        processes.restart(stage.cluster, node)
    mark(stage, "kill", "stop", "restarted every node")
    return {"recovery": await measure_recovery(stage, stage.now())}


async def behind_compaction(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    follower = await a_follower(stage)
    before = (await supervisor.statuses(stage.cluster))[follower.id]
    assert isinstance(before, api.NodeStatus)
    processes.kill(stage.cluster, follower)
    mark(stage, "kill", "start", f"kill -9 follower {follower.id} at applied index "
          f"{before.applied_index}")
    recovery = await measure_recovery(stage, stage.now())
    with trio.fail_after(60):  # until every other node compacted past what it holds
        while True:
            found = await supervisor.statuses(stage.cluster)
            others = [s for n, s in found.items() if n != follower.id]
            if all(isinstance(s, api.NodeStatus) and s.log_start > before.last_index
                   for s in others):
                break
            await trio.sleep(0.2)
    processes.restart(stage.cluster, follower)
    mark(stage, "kill", "stop", f"restarted {follower.id}")
    catch_up = await time_to_catch_up(stage, follower)
    after = (await supervisor.statuses(stage.cluster))[follower.id]
    installed = isinstance(after, api.NodeStatus) and after.log_start > before.last_index
    return {"recovery": recovery, "catch_up": catch_up, "snapshot_installed": float(installed)}


async def corrupt_tail(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    follower = await a_follower(stage)
    processes.kill(stage.cluster, follower)
    mark(stage, "disk", "start", f"kill -9 {follower.id}, then corrupt its last log record")
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
    recovery = await measure_recovery(stage, stage.now())
    shutil.rmtree(follower.data_dir)
    backup.rename(follower.data_dir)  # the operator restores the node's disk
    processes.restart(stage.cluster, follower)
    mark(stage, "disk", "stop", f"restored {follower.id}'s data dir and restarted it")
    return {"refused_to_start": refused, "recovery": recovery,
            "catch_up": await time_to_catch_up(stage, follower)}


async def follower_disk_lost(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    before = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    follower = await a_follower(stage)
    processes.kill(stage.cluster, follower)
    shutil.rmtree(follower.data_dir)
    mark(stage, "disk", "start", f"kill -9 {follower.id} and delete its data dir")
    recovery = await measure_recovery(stage, stage.now())
    processes.restart(stage.cluster, follower)
    mark(stage, "disk", "stop", f"restarted {follower.id} with an empty data dir")
    catch_up = await time_to_catch_up(stage, follower)
    after = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    same = before is not None and after is not None and (before.node, before.epoch) == (
        after.node, after.epoch)
    return {"recovery": recovery, "catch_up": catch_up, "same_leader": float(same)}


async def retries_across_failover(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    async with trio.open_nursery() as nursery:
        retried = 0

        async def send(client_number: int) -> None:
            nonlocal retried
            async with cluster_client(stage.cluster, deadline=60) as client:
                transfers = [api.TransferSpec(id=f"{stage.run}-retry-{client_number}-{i}",
                                              debit=stage.accounts[0], credit=stage.accounts[1],
                                              amount=1) for i in range(20)]
                results = await client.submit_transfers(transfers)
                retried += sum(1 for r in results if r.status == "ok")
        for number in range(8):
            nursery.start_soon(send, number)
        await trio.sleep(0.05)
        processes.kill(stage.cluster, leader)
        killed_at = stage.now()
        mark(stage, "kill", "start", f"kill -9 leader {leader.id} with requests in flight")
    recovery = await measure_recovery(stage, killed_at)
    processes.restart(stage.cluster, leader)
    mark(stage, "kill", "stop", f"restarted {leader.id}")
    return {"recovery": recovery, "acknowledged_retries": float(retried)}


async def leader_clock_skewed(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    write_skew(skew_path(stage.cluster.run_dir, leader.id), ClockSkew(offset_ms=2_000))
    mark(stage, "skew", "start", f"leader {leader.id} wall clock +2 s")
    skewed_at = stage.now()
    stepped_down = await time_to_step_down(
        stage, leader, because=lambda s: s.clock is not None and s.clock.alarm)
    recovery = await measure_recovery(stage, skewed_at)
    await trio.sleep(4)
    clear_skews(stage.cluster.run_dir)
    mark(stage, "skew", "stop", f"{leader.id} wall clock back")
    return {"stepped_down": stepped_down, "recovery": recovery,
            "catch_up": await time_to_catch_up(stage, leader)}


async def follower_clock_strobing(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    follower = await a_follower(stage)
    write_skew(skew_path(stage.cluster.run_dir, follower.id),
               ClockSkew(strobe_ms=2_000, strobe_period_s=0.5))
    mark(stage, "strobe", "start", f"{follower.id} wall clock jumping ±2 s every 0.5 s")
    recovery = await measure_recovery(stage, stage.now())
    await trio.sleep(6)
    clear_skews(stage.cluster.run_dir)
    mark(stage, "strobe", "stop", f"{follower.id} wall clock back")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, follower)}


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
    Row(name="follower's data dir lost", how="kill a follower, delete its data dir, restart it",
        expected="it catches up from the same leader (a snapshot if the log was compacted)",
        scenario=follower_disk_lost),
    Row(name="garbage in the epoch znode", how="write garbage to `epoch` with the cluster's "
        "ZooKeeper credential; `chaos kill leader`", expected="reported; the next leader "
        "overwrites it with an epoch above every one it has seen and serves",
        scenario=hostile.epoch_garbage),
    Row(name="epoch znode deleted", how="delete `epoch`; `chaos kill leader`",
        expected="reported; recreated from the highest epoch seen; a new leader serves",
        scenario=hostile.epoch_deleted),
    Row(name="epoch 2^63 in ZooKeeper at start", how="set `epoch` to 2^63; kill every node and "
        "restart them", expected="no crash, no crash loop: the nodes start, repair the epoch "
        "and elect a leader", scenario=hostile.epoch_huge_at_start),
    Row(name="garbage in the leader znode", how="replace the leader znode by garbage held by "
        "a live session; `chaos kill leader`", expected="the leader goes on leading (its epoch "
        "fences, not the znode); status reports it; the next leader removes it",
        scenario=hostile.leader_garbage),
    Row(name="leader znode squatted by a non-member", how="replace the leader znode by one "
        "naming `mallory`, held by a live session; `chaos kill leader`",
        expected="ignored; the next leader removes it and serves",
        scenario=hostile.leader_squatted),
    Row(name="client-port flood on the leader", how="1000 half-open TCP connections at a time "
        "on the leader's client port (through the chaos proxy) for 8 s",
        expected="the leader keeps leading; writes go on", scenario=hostile.client_port_flood),
)


def by_name(name: str) -> Row:
    return next(row for row in ROWS if row.name == name)


__all__ = ["ROWS", "Row", "by_name"]
