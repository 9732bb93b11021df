"""`quorapay bench scale`: what a node costs as its ledger grows.

For each level (a number of decided transfers stored), the running cluster is filled up to it
with batched transfers, then measured: each node's resident memory, a short unbatched and a
batched point, a `verify`, a follower killed (-9) and restarted until it serves again caught up,
and a follower rebuilt from nothing (through a snapshot once the logs are compacted) until it has
caught up. Every transfer acknowledged in the measured points is looked up afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from quorapay.api.schema import NodeStatus, TransferSpec
from quorapay.bench import cpu
from quorapay.bench.acknowledged import AckCheck, check_acknowledged
from quorapay.bench.points import ACCOUNTS, Measured, Point, measure, prepare
from quorapay.chaos import processes
from quorapay.client import ClientError
from quorapay.cluster import supervisor
from quorapay.cluster.backup import rebuild
from quorapay.cluster.processes import wait_gone
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.procfs import resident_bytes
from quorapay.security.access import cluster_client
from quorapay.verify.checks import check
from quorapay.verify.collect import collect
from quorapay.workload.transfers import account_ids

FILL_CLIENTS = 8
FILL_BATCH = 1000  # transfers per request while filling (the API's most)
UNBATCHED = Point(clients=16, batch=1)
BATCHED = Point(clients=16, batch=100)


@dataclass(frozen=True, slots=True, kw_only=True)
class Throughput:
    transfers_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Level:
    transfers: int  # decided transfers in the leader's ledger when measured (after the points)
    fill_seconds: float  # to fill up to the level from the level before
    fill_per_s: float
    rss_mb: dict[str, float]  # each node's resident memory, MB
    unbatched: Throughput
    batched: Throughput
    verify_seconds: float
    verdict: str
    restart_seconds: float | None  # kill -9 of a follower until it answered again, caught up
    rebuild_seconds: float | None  # a follower rebuilt from nothing until caught up
    rebuild_mb: float | None  # its database afterwards
    problems: list[str]  # what could not be measured, and why
    rebuild: Rebuild | None = None  # the rebuild's snapshot, and the leader meanwhile


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebuild:
    """A follower rebuilt from nothing: the snapshot streamed to it, and the unbatched point
    measured on the leader while it streamed."""

    snapshot_mb: float  # the leader's ledger, encoded, when the rebuild began
    stream_seconds: float | None  # from the first part until the last was acknowledged
    stream_mb_per_s: float | None
    while_streaming: Throughput | None  # None: the stream ended before a point could run


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleReport:
    cluster: str
    seconds: float  # measured per point
    levels: list[Level]
    check: AckCheck

    @property
    def valid(self) -> bool:
        return self.check.valid and all(level.verdict == "valid" for level in self.levels)


async def run_scale(cluster: ClusterConfig, levels: Sequence[int], *, seconds: float,
                    restart: bool = True, rebuild_nodes: bool = True, timeout: float = 600.0,
                    progress: Callable[[str], None] = lambda _: None) -> ScaleReport:
    await supervisor.wait_for_leader(cluster, timeout=30)
    prefix = f"scale-{uuid.uuid4().hex[:8]}"
    await prepare(cluster, prefix)
    measured: list[Level] = []
    sent: list[TransferSpec] = []
    for number, level in enumerate(levels, 1):
        progress(f"level {level}: filling")
        started = time.monotonic()
        before = (await _leader(cluster)).transfers
        filled = await _fill(cluster, prefix, f"{prefix}-f{number}", level, progress,
                             timeout=timeout)
        fill_seconds = time.monotonic() - started
        points = []
        for kind, point in (("unbatched", UNBATCHED), ("batched", BATCHED)):
            progress(f"level {level}: {kind} point")
            result = await measure(cluster, point, seconds, f"{prefix}-{number}{kind[0]}",
                                   prefix, warm_up=0.5)
            sent.extend(result.acknowledged)
            points.append(_throughput(result))
        stored = (await _leader(cluster)).transfers  # the points added some: measured here
        rss = {name: round(resident_bytes(pid) / 2**20, 1)
               for name, pid in cpu.cluster_pids(cluster).items()}
        progress(f"level {level}: verify")
        started = time.monotonic()
        report = check(await collect(cluster, settle=60, acknowledged=[]))
        verify_seconds = time.monotonic() - started
        problems = [f"verify: {finding}" for finding in report.findings]
        restarted = await _timed(problems, "restart", _restart_follower(cluster, timeout)) \
            if restart else None
        rebuilt, rebuild_mb, streamed = None, None, None
        if rebuild_nodes:
            progress(f"level {level}: rebuilding a follower")
            node = cluster.node((await _follower(cluster)).node)
            watch = _StreamWatch(cluster, node.id, seconds, f"{prefix}-{number}r", prefix)
            rebuilt = await _timed(problems, "rebuild", _rebuild(cluster, node.id, timeout,
                                                                  watch))
            rebuild_mb = _database_mb(cluster, node.id) if rebuilt is not None else None
            streamed = watch.result()
            sent.extend(watch.acknowledged)
        measured.append(Level(
            transfers=stored, fill_seconds=round(fill_seconds, 2),
            fill_per_s=round((filled - before) / fill_seconds, 1) if fill_seconds else 0.0,
            rss_mb=rss, unbatched=points[0], batched=points[1],
            verify_seconds=round(verify_seconds, 3), verdict=report.verdict.value,
            restart_seconds=restarted, rebuild_seconds=rebuilt, rebuild_mb=rebuild_mb,
            problems=problems, rebuild=streamed))
    return ScaleReport(cluster=cluster.name, seconds=seconds, levels=measured,
                       check=await check_acknowledged(cluster, sent))


async def _fill(cluster: ClusterConfig, prefix: str, run: str, level: int,
                progress: Callable[[str], None], *, timeout: float) -> int:
    """Send batched transfers until the leader's ledger holds `level` (or more, by up to a
    request per client); return what it holds."""
    ids = account_ids(ACCOUNTS, prefix)
    stored = (await _leader(cluster)).transfers
    counter = 0

    async def client_loop(number: int) -> None:
        nonlocal stored, counter
        async with cluster_client(cluster, deadline=60) as client:
            while stored < level:
                batch = []
                for _ in range(min(FILL_BATCH, level - stored)):
                    counter += 1
                    debit, credit = ids[counter % ACCOUNTS], ids[(counter * 7 + 1) % ACCOUNTS]
                    if debit == credit:
                        credit = ids[(counter + 1) % ACCOUNTS]
                    batch.append(TransferSpec(id=f"{run}-{number}-{counter}", debit=debit,
                                              credit=credit, amount=1))
                if not batch:
                    return
                try:
                    results = await client.submit_transfers(batch)
                except ClientError:  # retried with new ids: the count comes from the leader
                    await trio.sleep(0.2)
                    continue
                stored += len(results)
                progress(f"filling: {stored} of {level} transfers")

    with trio.move_on_after(timeout) as scope:
        async with trio.open_nursery() as nursery:
            for number in range(FILL_CLIENTS):
                nursery.start_soon(client_loop, number)
    if scope.cancelled_caught:
        raise QuorapayError(f"the cluster did not take {level} transfers within {timeout:g}s "
                            f"(it holds {stored}); see `quorapay status`")
    return (await _leader(cluster)).transfers


async def _restart_follower(cluster: ClusterConfig, timeout: float) -> float:
    node = cluster.node((await _follower(cluster)).node)
    started = time.monotonic()
    pid = processes.kill(cluster, node)
    await trio.to_thread.run_sync(wait_gone, pid, 10.0)
    processes.restart(cluster, node)
    await _caught_up(cluster, node.id, timeout)
    return round(time.monotonic() - started, 2)


async def _rebuild(cluster: ClusterConfig, node: str, timeout: float,
                   watch: _StreamWatch) -> float:
    """Rebuild `node`, watching the snapshot streamed to it meanwhile."""
    watch.snapshot_mb = (await _leader(cluster)).snapshot_bytes / 2**20
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        report = await rebuild(cluster, cluster.node(node), timeout=timeout)
        with trio.move_on_after(watch.seconds + 30):  # the point under way ends on its own
            await watch.done.wait()
        nursery.cancel_scope.cancel()
    return round(report.seconds, 2)


class _StreamWatch:
    """Polls the leader for its snapshot stream to `node`: when it began and ended; once it
    began, runs the unbatched point on the leader for `seconds`, or until the stream ends."""

    def __init__(self, cluster: ClusterConfig, node: str, seconds: float, run: str,
                 prefix: str) -> None:
        self._cluster, self._node, self.seconds = cluster, node, min(seconds, 60.0)
        self._run, self._prefix = run, prefix
        self.done = trio.Event()
        self.snapshot_mb = 0.0
        self.began: float | None = None
        self.ended: float | None = None
        self.point: Measured | None = None
        self.acknowledged: list[TransferSpec] = []

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while self.ended is None:
                leader = supervisor.current_leader(await supervisor.statuses(self._cluster))
                streaming = leader is not None and self._node in leader.snapshot_streams
                if streaming and self.began is None:
                    self.began = time.monotonic()
                    nursery.start_soon(self._measure)
                elif not streaming and self.began is not None:
                    self.ended = time.monotonic()
                await trio.sleep(0.1)
        self.done.set()

    async def _measure(self) -> None:
        self.point = await measure(self._cluster, UNBATCHED, self.seconds, self._run,
                                   self._prefix, warm_up=0.2)
        self.acknowledged = list(self.point.acknowledged)

    def result(self) -> Rebuild | None:
        if self.began is None:
            return None
        took = None if self.ended is None else round(self.ended - self.began, 2)
        return Rebuild(snapshot_mb=round(self.snapshot_mb, 1), stream_seconds=took,
                       stream_mb_per_s=round(self.snapshot_mb / took, 1) if took else None,
                       while_streaming=_throughput(self.point) if self.point else None)


async def _timed(problems: list[str], what: str, work: Awaitable[float]) -> float | None:
    """Await `work` (giving seconds); on a QuorapayError note it and give None."""
    try:
        return await work
    except QuorapayError as exc:
        problems.append(f"{what}: {exc}")
        return None


async def _caught_up(cluster: ClusterConfig, node: str, timeout: float) -> None:
    with trio.move_on_after(timeout):
        target = (await _leader(cluster)).commit_index
        while True:
            found = (await supervisor.statuses(cluster)).get(node)
            if isinstance(found, NodeStatus) and found.applied_index >= target:
                return
            await trio.sleep(0.1)
    raise QuorapayError(f"{node} did not serve again within {timeout:g}s")


async def _leader(cluster: ClusterConfig) -> NodeStatus:
    return await supervisor.wait_for_leader(cluster, timeout=60)


async def _follower(cluster: ClusterConfig) -> NodeStatus:
    found = await supervisor.statuses(cluster)
    for status in found.values():
        if isinstance(status, NodeStatus) and status.role == "follower":
            return status
    raise QuorapayError("no follower answers")


def _throughput(m: Measured) -> Throughput:
    return Throughput(transfers_per_s=m.transfers_per_s, p50_ms=m.p50_ms, p99_ms=m.p99_ms,
                      failed=m.failed)


def _database_mb(cluster: ClusterConfig, node: str) -> float:
    folder = cluster.node(node).data_dir
    total = sum(f.stat().st_size for f in folder.glob("node.db*") if f.is_file())
    return round(total / 2**20, 1)
