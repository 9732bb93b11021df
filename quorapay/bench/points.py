"""One measured point of a closed-loop bank workload: N clients, each sending B transfers per
request and waiting for the answer before the next, for S seconds after a warm-up. Latency is
per request, recorded in an HDR histogram; the cluster's CPU is read from /proc around the
measured seconds; every transfer acknowledged is kept, to be looked up afterwards."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio
from hdrh.histogram import HdrHistogram

from quorapay.api.schema import TransferSpec
from quorapay.bench import cpu
from quorapay.client import ClientError
from quorapay.config import ClusterConfig
from quorapay.security.access import cluster_client
from quorapay.workload.transfers import account_ids, setup_accounts

ACCOUNTS = 100
WARM_UP = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    clients: int
    batch: int

    def __str__(self) -> str:
        return f"{self.clients}" if self.batch == 1 else f"{self.clients}x{self.batch}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    transfers_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int  # requests that ended in an error (counted, not retried)
    p90_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    requests: int = 0  # answered within the measured seconds
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per process, measured seconds
    acknowledged: list[TransferSpec] = field(default_factory=list, repr=False)
    seconds: float = 0.0  # measured

    @property
    def cpu_ms_per_transfer(self) -> float | None:
        """The cluster's CPU per acknowledged transfer (None when no process could be read)."""
        done = self.transfers_per_s * self.seconds
        return round(1000 * sum(self.cpu_seconds.values()) / done, 3) \
            if self.cpu_seconds and done else None


async def prepare(cluster: ClusterConfig, prefix: str) -> None:
    """The benchmark's accounts, `<prefix>-acct-N`: its own, whatever else the cluster holds."""
    async with cluster_client(cluster, deadline=60) as client:
        await setup_accounts(client, ACCOUNTS, prefix=prefix)


async def measure(cluster: ClusterConfig, point: Point, seconds: float, run: str, prefix: str,
                  *, pids: Mapping[str, int] | None = None, warm_up: float = WARM_UP
                  ) -> Measured:
    """Run the point; `pids` (name -> pid) are the processes whose CPU is measured."""
    histogram = HdrHistogram(1, 60_000_000, 3)  # microseconds, up to a minute
    done = failed = 0
    acknowledged: list[TransferSpec] = []
    ids = account_ids(ACCOUNTS, prefix)
    measuring_from = time.monotonic() + warm_up
    stop_at = measuring_from + seconds
    samples: list[cpu.CpuSample] = []

    async def client_loop(number: int) -> None:
        nonlocal done, failed
        rng = random.Random(number)
        sequence = 0
        async with cluster_client(cluster, deadline=30) as client:
            while (now := time.monotonic()) < stop_at:
                batch = []
                for _ in range(point.batch):
                    sequence += 1
                    debit, credit = rng.sample(ids, 2)
                    batch.append(TransferSpec(id=f"{run}-{number}-{sequence}", debit=debit,
                                              credit=credit, amount=1))
                try:
                    results = await client.submit_transfers(batch)
                except ClientError:
                    failed += 1
                    continue
                finished = time.monotonic()
                acknowledged.extend(s for s, r in zip(batch, results, strict=True)
                                    if r.status == "ok")
                if now >= measuring_from and finished <= stop_at:
                    histogram.record_value(max(1, int((finished - now) * 1e6)))
                    done += point.batch

    async def sample_cpu() -> None:
        await trio.sleep_until(_trio_time(measuring_from))
        samples.append(cpu.sample(pids or {}))
        await trio.sleep_until(_trio_time(stop_at))
        samples.append(cpu.sample(pids or {}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_cpu)
        for number in range(point.clients):
            nursery.start_soon(client_loop, number)
    percentile = histogram.get_value_at_percentile
    return Measured(transfers_per_s=round(done / seconds, 1), seconds=seconds,
                    p50_ms=percentile(50) / 1000, p90_ms=percentile(90) / 1000,
                    p99_ms=percentile(99) / 1000, p999_ms=percentile(99.9) / 1000,
                    max_ms=histogram.get_max_value() / 1000, failed=failed,
                    requests=histogram.get_total_count(),
                    cpu_seconds=cpu.used(samples[0], samples[1]), acknowledged=acknowledged)


def _trio_time(monotonic: float) -> float:
    """A time.monotonic() instant on trio's clock."""
    return trio.current_time() + (monotonic - time.monotonic())
