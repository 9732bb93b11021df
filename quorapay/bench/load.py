"""`quorapay bench`: the standard closed-loop workloads against a running cluster.

Each point (N clients, B transfers per request) runs for a warm-up and then the measured
seconds, on accounts of the benchmark's own; the cluster's CPU is read from /proc for the
processes this machine's supervisor started. Afterwards every acknowledged transfer is looked
up: a benchmark that lost one is a failed benchmark, whatever its speed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quorapay.bench import cpu
from quorapay.bench.acknowledged import AckCheck, check_acknowledged
from quorapay.bench.points import WARM_UP, Measured, Point, measure, prepare
from quorapay.cluster import runtime, supervisor
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError

STANDARD = (Point(clients=1, batch=1), Point(clients=16, batch=1), Point(clients=64, batch=1),
            Point(clients=16, batch=100))


class BenchError(QuorapayError):
    """The benchmark cannot run as asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PointResult:
    clients: int
    batch: int
    transfers_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    failed: int
    acknowledged: int
    cpu_seconds: dict[str, float]  # per process, over the measured seconds
    cpu_cores: float | None  # the cluster's CPU seconds per second
    cpu_ms_per_transfer: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    cluster: str
    nodes: int
    proxies: bool
    tls: bool
    cores: int  # of this machine, which runs the clients too
    seconds: float  # measured per point, after warm_up
    warm_up: float
    points: list[PointResult]
    check: AckCheck

    @property
    def valid(self) -> bool:
        return self.check.valid


def parse_points(text: str) -> list[Point]:
    """"1,16,64,16x100": clients, or clients x transfers per request."""
    points = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        clients, _, batch = part.partition("x")
        try:
            point = Point(clients=int(clients), batch=int(batch or 1))
        except ValueError:
            raise BenchError(f"bad point {part!r}: write CLIENTS or CLIENTSxBATCH, "
                             "e.g. 1,16,64,16x100") from None
        if not 1 <= point.clients <= 256 or not 1 <= point.batch <= 1000:
            raise BenchError(f"bad point {part!r}: 1-256 clients, 1-1000 transfers per request")
        points.append(point)
    if not points:
        raise BenchError("no points to measure")
    return points


async def run_load(cluster: ClusterConfig, points: Sequence[Point], *, seconds: float,
                   warm_up: float = WARM_UP,
                   progress: Callable[[Point, Measured | None], None] = lambda *_: None
                   ) -> LoadReport:
    """Measure each point in turn; `progress(point, None)` before it, `(point, m)` after."""
    await supervisor.wait_for_leader(cluster, timeout=30)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    await prepare(cluster, prefix)
    pids = cpu.cluster_pids(cluster)
    results: list[PointResult] = []
    sent = []
    for number, point in enumerate(points, 1):
        progress(point, None)
        measured = await measure(cluster, point, seconds, f"{prefix}-p{number}", prefix,
                                 pids=pids, warm_up=warm_up)
        progress(point, measured)
        sent.extend(measured.acknowledged)
        results.append(_result(point, measured, seconds))
    return LoadReport(cluster=cluster.name, nodes=len(cluster.nodes),
                      proxies=runtime.proxied(cluster), tls=cluster.security.tls,
                      cores=os.cpu_count() or 1, seconds=seconds, warm_up=warm_up,
                      points=results, check=await check_acknowledged(cluster, sent))


def _result(point: Point, m: Measured, seconds: float) -> PointResult:
    cores = round(sum(m.cpu_seconds.values()) / seconds, 3) if m.cpu_seconds else None
    return PointResult(clients=point.clients, batch=point.batch,
                       transfers_per_s=m.transfers_per_s, p50_ms=m.p50_ms, p90_ms=m.p90_ms,
                       p99_ms=m.p99_ms, p999_ms=m.p999_ms, max_ms=m.max_ms,
                       requests=m.requests, failed=m.failed, acknowledged=len(m.acknowledged),
                       cpu_seconds=m.cpu_seconds, cpu_cores=cores,
                       cpu_ms_per_transfer=m.cpu_ms_per_transfer)
