"""`quorapay bench tls`: what TLS, client certificates and ZooKeeper ACLs cost.

Two local clusters of three nodes, alike in all but security (one with
`security.insecure_benchmark_only`), both without the chaos proxy, are measured in turns --
round after round, the same points in the same order -- so that a noisy machine treats both
alike; each round starts each cluster afresh. Reported: the median of the rounds per point, and
the ratio secure / insecure.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quorapay.bench.points import Measured, Point, measure, prepare
from quorapay.cluster import supervisor
from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets

POINTS = (Point(clients=1, batch=1), Point(clients=16, batch=1), Point(clients=16, batch=100))
MODES = ("tls", "insecure")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    point: Point
    tls: Measured
    insecure: Measured

    @property
    def ratio(self) -> float:
        base = self.insecure.transfers_per_s
        return round(self.tls.transfers_per_s / base, 3) if base else 0.0


def cluster_file(folder: Path, mode: str, zookeeper_port: int) -> ClusterConfig:
    document = default_cluster(nodes=3, name=f"bench-{mode}", zookeeper_port=zookeeper_port)
    document["chaos"] = {"proxies": False}
    document["security"]["insecure_benchmark_only"] = mode == "insecure"
    ports = free_ports(6, avoid={zookeeper_port})
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    (folder / mode).mkdir(parents=True, exist_ok=True)
    path = folder / mode / "cluster.toml"
    path.write_text(render(document))
    cluster = load_config(path)
    if mode == "tls":
        ensure_secrets(cluster)
    return cluster


async def run_bench(rounds: int, seconds: float,
                    progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    results: dict[str, dict[Point, list[Measured]]] = {m: {p: [] for p in POINTS} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="quorapay-bench-") as folder:
        zookeeper_ports = free_ports(len(MODES))
        clusters = {m: cluster_file(Path(folder), m, zookeeper_ports[i])
                    for i, m in enumerate(MODES)}
        try:
            for round_number in range(1, rounds + 1):
                for mode in MODES:
                    cluster = clusters[mode]
                    prefix = f"bench-{uuid.uuid4().hex[:6]}"
                    await _fresh(cluster, prefix)
                    for point in POINTS:
                        measured = await measure(cluster, point, seconds,
                                                 f"{prefix}-r{round_number}", prefix)
                        results[mode][point].append(measured)
                        progress(f"round {round_number}/{rounds} {mode:8} {point.clients:>2} "
                                 f"client(s) x {point.batch:>3}: {measured.transfers_per_s:>8}"
                                 f"/s, p50 {measured.p50_ms} ms, p99 {measured.p99_ms} ms")
                    supervisor.down(cluster)
        finally:
            for cluster in clusters.values():
                supervisor.down(cluster)
    return [Row(point=p, tls=_median(results["tls"][p]), insecure=_median(results["insecure"][p]))
            for p in POINTS]


async def _fresh(cluster: ClusterConfig, prefix: str) -> None:
    supervisor.down(cluster)
    for node in cluster.nodes:
        _remove(node.data_dir)
    _remove(cluster.run_dir)
    await supervisor.up(cluster)
    await prepare(cluster, prefix)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _median(samples: list[Measured]) -> Measured:
    return Measured(transfers_per_s=statistics.median(s.transfers_per_s for s in samples),
                    p50_ms=statistics.median(s.p50_ms for s in samples),
                    p99_ms=statistics.median(s.p99_ms for s in samples),
                    failed=sum(s.failed for s in samples))
