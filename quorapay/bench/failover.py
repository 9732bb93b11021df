"""`quorapay bench failover`: the distribution of leader failure -> next committed write.

Against a running local cluster under a steady closed-loop load: each round waits until every
node answers and has caught up, kills the leader with SIGKILL (or stops it with SIGSTOP with
`pause`) and measures the time until a write commits through the other nodes (a barrier probe,
retried every 10 ms). A killed node is restarted; a paused one is resumed and must then step
down in favour of the new epoch (fenced). Afterwards every transfer the load was told "ok" is
looked up in the ledger.
"""

from __future__ import annotations

import random
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import trio

from quorapay.api import schema as api
from quorapay.api.schema import TransferSpec
from quorapay.bench.acknowledged import AckCheck, check_acknowledged
from quorapay.bench.load import BenchError
from quorapay.bench.points import ACCOUNTS, prepare
from quorapay.chaos import processes
from quorapay.chaos.kill import first_commit, new_leader
from quorapay.client import ClientError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.security.access import cluster_client
from quorapay.workload.transfers import account_ids

CAUGHT_UP = 50  # entries a node may be behind the leader's commit index to count as caught up


@dataclass(frozen=True, slots=True, kw_only=True)
class Takeover:
    round: int
    fault: str  # "kill" or "pause"
    old_leader: str
    old_epoch: int
    new_leader: str
    new_epoch: int
    seconds: float  # from the signal until a write committed through another node
    fenced: bool | None  # pause: the resumed old leader stepped down to the new epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverReport:
    cluster: str
    fault: str
    clients: int
    session_timeout: float
    takeovers: list[Takeover]
    median_s: float
    max_s: float
    acknowledged_during: int  # transfers the load was told "ok" across the rounds
    check: AckCheck

    @property
    def valid(self) -> bool:
        return self.check.valid and all(t.fenced is not False for t in self.takeovers)


async def run_failover(cluster: ClusterConfig, *, rounds: int, pause: bool, clients: int,
                       timeout: float = 60.0,
                       progress: Callable[[Takeover], None] = lambda _: None) -> FailoverReport:
    await supervisor.wait_for_leader(cluster, timeout=30)
    if any(supervisor.node_process(cluster, n).pid() is None for n in cluster.nodes):
        raise BenchError("bench failover needs a local cluster this machine started "
                         "with every node running (`quorapay up`): it kills and restarts them")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    await prepare(cluster, prefix)
    acknowledged: list[TransferSpec] = []
    takeovers: list[Takeover] = []
    async with trio.open_nursery() as nursery:
        for number in range(clients):
            nursery.start_soon(_load, cluster, prefix, number, acknowledged)
        for number in range(1, rounds + 1):
            takeover = await _round(cluster, number, pause=pause, timeout=timeout)
            takeovers.append(takeover)
            progress(takeover)
        nursery.cancel_scope.cancel()
    seconds = [t.seconds for t in takeovers]
    return FailoverReport(cluster=cluster.name, fault="pause" if pause else "kill",
                          clients=clients, session_timeout=cluster.zookeeper.session_timeout,
                          takeovers=takeovers, median_s=round(statistics.median(seconds), 3),
                          max_s=max(seconds), acknowledged_during=len(acknowledged),
                          check=await check_acknowledged(cluster, acknowledged))


async def _round(cluster: ClusterConfig, number: int, *, pause: bool, timeout: float
                 ) -> Takeover:
    leader = await _healthy(cluster, timeout=timeout)
    node = cluster.node(leader.node)
    process = supervisor.node_process(cluster, node)
    if process.signal(signal.SIGSTOP if pause else signal.SIGKILL) is None:
        raise BenchError(f"leader {node.id} has no process this machine started")
    signalled = time.monotonic()
    survivors = [n for n in cluster.nodes if n.id != node.id]
    try:
        await first_commit(cluster, survivors, timeout=timeout)
    except ClientError as exc:
        raise BenchError(f"round {number}: no write committed within {timeout:g}s of the "
                         f"{'pause' if pause else 'kill'} of {node.id}: {exc}") from None
    seconds = round(time.monotonic() - signalled, 3)
    leading = await new_leader(cluster, node.id)
    fenced = None
    if pause:
        processes.resume(cluster, node)
        fenced = await _stepped_down(cluster, node.id, leading.epoch, timeout=timeout)
    else:
        processes.restart(cluster, node)
    return Takeover(round=number, fault="pause" if pause else "kill", old_leader=node.id,
                    old_epoch=leader.epoch, new_leader=leading.node, new_epoch=leading.epoch,
                    seconds=seconds, fenced=fenced)


async def _healthy(cluster: ClusterConfig, *, timeout: float) -> api.NodeStatus:
    """The serving leader, once every node answers within CAUGHT_UP entries of its commit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await supervisor.statuses(cluster)
        leader = supervisor.current_leader(found)
        if leader is not None and all(
                isinstance(s, api.NodeStatus) and s.epoch == leader.epoch
                and s.applied_index >= leader.commit_index - CAUGHT_UP for s in found.values()):
            return leader
        await trio.sleep(0.1)
    raise BenchError(f"the cluster did not become healthy within {timeout:g}s "
                     "(every node answering and caught up); see `quorapay status`")


async def _stepped_down(cluster: ClusterConfig, old: str, epoch: int, *, timeout: float
                        ) -> bool:
    """Whether the resumed old leader follows an epoch >= `epoch` within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await supervisor.statuses(cluster)).get(old)
        if isinstance(status, api.NodeStatus) and status.role == "follower" \
                and status.epoch >= epoch:
            return True
        await trio.sleep(0.05)
    return False


async def _load(cluster: ClusterConfig, prefix: str, number: int,
                acknowledged: list[TransferSpec]) -> None:
    """One closed-loop client, for as long as the rounds last."""
    rng = random.Random(number)
    ids = account_ids(ACCOUNTS, prefix)
    sequence = 0
    async with cluster_client(cluster, deadline=30) as client:
        while True:
            sequence += 1
            debit, credit = rng.sample(ids, 2)
            spec = TransferSpec(id=f"{prefix}-f{number}-{sequence}", debit=debit,
                                credit=credit, amount=1)
            try:
                results = await client.submit_transfers([spec])
            except ClientError:
                continue
            if results and results[0].status == "ok":
                acknowledged.append(spec)
