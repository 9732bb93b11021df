"""One measured point of a closed-loop bank workload: N clients, each sending B transfers per
request and waiting for the answer before the next, for S seconds after a warm-up. Latency is
per request, recorded in an HDR histogram."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import trio
from hdrh.histogram import HdrHistogram

from quorapay.api.schema import TransferSpec
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    transfers_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int


async def prepare(cluster: ClusterConfig, prefix: str) -> None:
    """The benchmark's accounts, `<prefix>-acct-N`: its own, whatever else the cluster holds."""
    async with cluster_client(cluster, deadline=60) as client:
        await setup_accounts(client, ACCOUNTS, prefix=prefix)


async def measure(cluster: ClusterConfig, point: Point, seconds: float, run: str, prefix: str
                  ) -> Measured:
    histogram = HdrHistogram(1, 60_000_000, 3)  # microseconds, up to a minute
    done = 0
    failed = 0
    ids = account_ids(ACCOUNTS, prefix)
    stop_at = time.monotonic() + WARM_UP + seconds
    measuring_from = time.monotonic() + WARM_UP

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
                    await client.submit_transfers(batch)
                except ClientError:
                    failed += 1
                    continue
                finished = time.monotonic()
                if now >= measuring_from:
                    histogram.record_value(max(1, int((finished - now) * 1e6)))
                    done += point.batch

    async with trio.open_nursery() as nursery:
        for number in range(point.clients):
            nursery.start_soon(client_loop, number)
    return Measured(transfers_per_s=round(done / seconds, 1),
                    p50_ms=histogram.get_value_at_percentile(50) / 1000,
                    p99_ms=histogram.get_value_at_percentile(99) / 1000, failed=failed)
