"""Failure-matrix rows where someone hostile acts: whoever holds the cluster's ZooKeeper
credential writes garbage or squats znodes, and anyone who can reach the client port floods it
with half-open connections. Each row runs under the bank workload and is judged by the bank
checker like every other row; what must hold is written in its `expected`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import trio
import trio.lowlevel
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from quorapay.api import schema as api
from quorapay.chaos import processes
from quorapay.check.bank import Stage
from quorapay.check.staging import (
    START,
    mark,
    measure_recovery,
    serving_leader,
    time_to_catch_up,
    wait_until,
)
from quorapay.cluster import supervisor, zookeeper
from quorapay.core.types import Epoch, NodeId
from quorapay.core.znodes import Layout, LeaderInfo, encode

FLOOD_SECONDS = 8.0
FLOOD_CONCURRENCY = 1000  # half-open connections held at a time
HUGE_EPOCH = b'{"epoch": 9223372036854775808}'  # 2^63: SQLite's INTEGER cannot hold it


class Tamperer:
    """A kazoo session holding the cluster's credential (blocking calls run in a thread). What
    it creates as ephemeral lives until `close`: a squatter."""

    def __init__(self, stage: Stage) -> None:
        self.layout = Layout(stage.cluster.name)
        self._zk: KazooClient = zookeeper.admin_client(stage.cluster)

    async def __aenter__(self) -> Tamperer:
        await self._run(self._zk.start, 15)
        return self

    async def __aexit__(self, *_: object) -> None:
        with trio.CancelScope(shield=True):
            await self._run(self._zk.stop)
            await self._run(self._zk.close)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    async def write(self, path: str, data: bytes, *, ephemeral: bool = False) -> None:
        """Replace the znode (whoever owned it) by one of ours holding `data`."""
        await self.delete(path)
        await self._run(lambda: self._zk.create(path, data, ephemeral=ephemeral))

    async def set(self, path: str, data: bytes) -> None:
        await self._run(lambda: self._zk.set(path, data))

    async def delete(self, path: str) -> None:
        with contextlib.suppress(NoNodeError):
            await self._run(self._zk.delete, path)

    async def read(self, path: str) -> bytes:
        data, _ = await self._run(self._zk.get, path)
        return bytes(data)


async def _reported(stage: Stage, words: str) -> float:
    """1.0 if some node reports a ZooKeeper warning containing `words` now."""
    found = await supervisor.statuses(stage.cluster)
    return float(any(isinstance(s, api.NodeStatus) and s.zookeeper_warning and
                     words in s.zookeeper_warning for s in found.values()))


async def _fail_over(stage: Stage, why: str) -> dict[str, float]:
    """Kill the leader; the next one must claim through what was done to ZooKeeper."""
    leader = await serving_leader(stage)
    processes.kill(stage.cluster, leader)
    mark(stage, "kill", "start", f"kill -9 leader {leader.id} ({why})")
    recovery = await measure_recovery(stage, stage.now())
    processes.restart(stage.cluster, leader)
    mark(stage, "kill", "stop", f"restarted {leader.id}")
    return {"recovery": recovery, "catch_up": await time_to_catch_up(stage, leader)}


async def epoch_garbage(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    async with Tamperer(stage) as zk:
        await zk.set(zk.layout.epoch, b"\x00\xffnot an epoch")
        mark(stage, "zk", "start", "garbage written to the epoch znode")
        measured = await _fail_over(stage, "the next claim meets the garbage")
        record = await zk.read(zk.layout.epoch)
    measured["reported"] = await _reported(stage, "not an epoch")
    measured["repaired"] = float(record.startswith(b'{"epoch":'))
    mark(stage, "zk", "stop", f"epoch znode now {record.decode(errors='replace')}")
    return measured


async def epoch_deleted(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    async with Tamperer(stage) as zk:
        await zk.delete(zk.layout.epoch)
        mark(stage, "zk", "start", "the epoch znode deleted")
        measured = await _fail_over(stage, "the next claim finds no epoch znode")
        record = await zk.read(zk.layout.epoch)
    measured["reported"] = await _reported(stage, "missing")
    measured["repaired"] = float(record.startswith(b'{"epoch":'))
    mark(stage, "zk", "stop", f"epoch znode now {record.decode(errors='replace')}")
    return measured


async def epoch_huge_at_start(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    async with Tamperer(stage) as zk:
        await zk.set(zk.layout.epoch, HUGE_EPOCH)
        mark(stage, "zk", "start", "epoch znode set to 2^63; every node killed and restarted")
        for node in stage.cluster.nodes:
            processes.kill(stage.cluster, node)
        await trio.sleep(1)
        for node in stage.cluster.nodes:
            processes.restart(stage.cluster, node)
        recovery = await measure_recovery(stage, stage.now())
        record = await zk.read(zk.layout.epoch)
    up = [supervisor.node_process(stage.cluster, n).pid() is not None
          for n in stage.cluster.nodes]
    mark(stage, "zk", "stop", f"epoch znode now {record.decode(errors='replace')}")
    return {"recovery": recovery, "nodes_up": float(sum(up)),
            "repaired": float(record != HUGE_EPOCH)}


async def _squat_leader(stage: Stage, data: bytes, what: str) -> dict[str, float]:
    await wait_until(stage, START)
    async with Tamperer(stage) as zk:
        leader = await serving_leader(stage)
        await zk.write(zk.layout.leader, data, ephemeral=True)
        mark(stage, "zk", "start", f"{what} in place of {leader.id}'s leader znode, held by a "
             "live session")
        await trio.sleep(1)
        still = await serving_leader(stage)
        measured = await _fail_over(stage, "the next claim finds the squatter")
        measured["leader_kept"] = float(still.id == leader.id)
        mark(stage, "zk", "stop", "the squatter's session ends")
    measured["reported"] = await _reported(stage, "leader")
    return measured


async def leader_garbage(stage: Stage) -> dict[str, float]:
    return await _squat_leader(stage, b"{garbage", "garbage")


async def leader_squatted(stage: Stage) -> dict[str, float]:
    squatter = LeaderInfo(node=NodeId("mallory"), epoch=Epoch(99), peer_url="wss://evil:1/",
                          client_url="wss://evil:2/")
    return await _squat_leader(stage, encode(squatter), "a leader znode naming mallory")


async def client_port_flood(stage: Stage) -> dict[str, float]:
    await wait_until(stage, START)
    leader = await serving_leader(stage)
    before = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    assert before is not None
    flood_start = stage.now()
    mark(stage, "flood", "start", f"{FLOOD_CONCURRENCY} half-open connections at a time on "
         f"{leader.id}'s client port, for {FLOOD_SECONDS:g} s")
    done = await trio.run_process(
        [sys.executable, "-m", "quorapay.check.flood", leader.host, str(leader.client_port),
         str(FLOOD_SECONDS), str(FLOOD_CONCURRENCY)], capture_stdout=True)
    opened = int(done.stdout.decode().strip() or 0)
    flood_end = stage.now()
    mark(stage, "flood", "stop", f"{opened} connections opened")
    after = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    kept = after is not None and (after.node, after.epoch) == (before.node, before.epoch)
    rate_before = stage.acks(flood_start - START + 1, flood_start) / (START - 1)
    rate_during = stage.acks(flood_start, flood_end) / (flood_end - flood_start)
    return {"leader_kept": float(kept), "connections": float(opened),
            "acks_per_s_before": round(rate_before, 1),
            "acks_per_s_during": round(rate_during, 1),
            "longest_stall": stage.stall(flood_start, flood_end),
            "recovery": await measure_recovery(stage, flood_end)}
