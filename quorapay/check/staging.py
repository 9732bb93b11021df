"""What the failure matrix's scenarios share: waiting for moments, marking faults in the history,
finding the leader, and measuring recovery, catch-up and step-down on a running bank test.

Times are on the history's clock; faults start START seconds into the workload, so that the
cluster is busy when they strike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from quorapay.api import schema as api
from quorapay.chaos.links import Faults, read_faults, write_faults
from quorapay.check.bank import Stage
from quorapay.check.history import Nemesis
from quorapay.cluster import runtime, supervisor
from quorapay.cluster.plan import read_plan
from quorapay.config import NodeConfig
from quorapay.security.access import cluster_client

START = 3.0  # seconds into the workload before the fault


async def wait_until(stage: Stage, moment: float) -> None:
    await trio.sleep(max(0.0, moment - stage.now()))


def mark(stage: Stage, fault: str, phase: str, detail: str) -> None:
    stage.record(Nemesis(time=stage.now(), fault=fault, phase=phase, detail=detail))


async def serving_leader(stage: Stage, deadline: float = 30.0) -> NodeConfig:
    """The serving leader, waiting for one through a handover (or a slow status)."""
    with trio.fail_after(deadline):
        while (leader := await serving_leader_id(stage)) is None:  # noqa: ASYNC110  (another process)
            await trio.sleep(0.1)
    return stage.cluster.node(leader)


async def serving_leader_id(stage: Stage) -> str | None:
    """The serving leader now, or None during a handover."""
    leader = supervisor.current_leader(await supervisor.statuses(stage.cluster))
    return None if leader is None else leader.node


async def measure_recovery(stage: Stage, since: float, deadline: float = 60.0) -> float:
    """Wait until writes are acknowledged again, then return the recovery time: the longest
    stretch without any acknowledged transfer, from `since` (the fault) until now."""
    with trio.fail_after(deadline):
        await stage.first_ack_after(since)
        await stage.first_ack_after(stage.now() + 1.0)  # let the stall, if any, end for sure
    return stage.stall(since, stage.now())


async def time_to_write(stage: Stage, deadline: float = 30.0) -> float:
    """Seconds until a write (a barrier) commits, from now (when clients may be idle)."""
    started = time.monotonic()
    async with cluster_client(stage.cluster, deadline=deadline) as client:
        await client.barrier()
    return round(time.monotonic() - started, 3)


async def time_to_catch_up(stage: Stage, node: NodeConfig, deadline: float = 30.0) -> float:
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


async def time_to_step_down(stage: Stage, leader: NodeConfig,
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


def change_faults(stage: Stage, change: Callable[..., tuple[Faults, list[str]]]) -> None:
    cluster = stage.cluster
    path = runtime.faults_path(cluster)
    faults, _ = change(read_faults(path), read_plan(runtime.plan_path(cluster)))
    write_faults(path, faults)


def heal_links(stage: Stage) -> None:
    write_faults(runtime.faults_path(stage.cluster), Faults())


def node_ids(stage: Stage) -> list[str]:
    return [n.id for n in stage.cluster.nodes]


async def a_follower(stage: Stage) -> NodeConfig:
    leader = await serving_leader(stage)
    return next(n for n in stage.cluster.nodes if n.id != leader.id)
