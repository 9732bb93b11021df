"""Random transfers between funded accounts, from concurrent clients, with a record of outcomes.

Transfer ids are `<run>-<n>`; each client retries with the same ids across failover until its
deadline, so a transfer is never applied twice. Every outcome a client was told is appended to the
record (JSONL, the format `quorapay verify --acknowledged` reads); an unknown outcome is recorded
as "unknown".
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio

from quorapay.api.schema import AccountSpec, TransferSpec
from quorapay.client import Client, ClientError
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.security.access import cluster_client
from quorapay.verify.checks import Acknowledged

ISSUER = "bank"
FUNDING = 1_000_000


class WorkloadError(QuorapayError):
    """The workload cannot run as asked (its accounts conflict, its record is not writable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadReport:
    run: str
    transfers: int
    outcomes: dict[str, int]  # status -> count ("unknown" for no definitive answer)
    seconds: float
    per_second: float


async def _open_record(path: Path) -> Any:  # trio.AsyncIOWrapper of a binary file
    """Open the record before any transfer is sent, so that outcomes are never lost."""
    try:
        return await trio.Path(path).open("ab")
    except OSError as exc:
        raise WorkloadError(f"cannot write the record file {path}: {exc.strerror}") from None


def account_ids(count: int) -> list[str]:
    return [f"acct-{i}" for i in range(1, count + 1)]


async def setup_accounts(client: Client, count: int, currency: str = "USD") -> None:
    """Create the issuer and `count` accounts, and fund each once (idempotent ids).

    Raises WorkloadError if an account exists with other attributes or a funding failed: the
    workload would otherwise run against accounts it does not control.
    """
    created = await client.create_accounts(
        [AccountSpec(id=ISSUER, currency=currency, allow_negative=True)]
        + [AccountSpec(id=a, currency=currency) for a in account_ids(count)])
    funded = await client.submit_transfers([
        TransferSpec(id=f"fund-{a}", debit=ISSUER, credit=a, amount=FUNDING, currency=currency)
        for a in account_ids(count)])
    failed = [r for r in created + funded if r.status != "ok"]
    if failed:
        first = failed[0]
        raise WorkloadError(
            f"cannot set up the workload's accounts: {first.id}: {first.status}"
            + (f" ({first.detail})" if first.detail else "")
            + f"; it needs {ISSUER!r} as an issuer and acct-1..acct-{count} in {currency}, "
              "all its own (use a fresh cluster or other account ids)")


def plan(run: str, transfers: int, accounts: int, seed: int) -> list[TransferSpec]:
    rng = random.Random(seed)
    ids = account_ids(accounts)
    planned = []
    for n in range(1, transfers + 1):
        debit, credit = rng.sample(ids, 2)
        planned.append(TransferSpec(id=f"{run}-{n}", debit=debit, credit=credit,
                                    amount=rng.randint(1, 100)))
    return planned


async def run_workload(cluster: ClusterConfig, *, run: str, transfers: int, accounts: int,
                       clients: int, batch: int, seed: int, record: Path | None,
                       deadline: float = 60.0) -> WorkloadReport:
    out = await _open_record(record) if record is not None else None
    async with cluster_client(cluster, deadline=deadline) as client:
        await setup_accounts(client, accounts)
    work = plan(run, transfers, accounts, seed)
    outcomes: Counter[str] = Counter()
    lines: list[bytes] = []
    started = time.monotonic()

    async def worker(share: list[TransferSpec]) -> None:
        async with cluster_client(cluster, deadline=deadline) as client:
            for i in range(0, len(share), batch):
                chunk = share[i:i + batch]
                try:
                    statuses = [r.status for r in await client.submit_transfers(chunk)]
                except ClientError as exc:
                    statuses = ["unknown" if exc.code == "TIMEOUT" else "unavailable"] * len(chunk)
                for spec, status in zip(chunk, statuses, strict=True):
                    outcomes[status] += 1
                    lines.append(msgspec.json.encode(Acknowledged(
                        id=spec.id, debit=spec.debit, credit=spec.credit, amount=spec.amount,
                        currency=spec.currency, status=status)))

    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(worker, work[c::clients])
    seconds = time.monotonic() - started
    if out is not None:
        async with out:
            await out.write(b"".join(line + b"\n" for line in lines))
    return WorkloadReport(run=run, transfers=transfers, outcomes=dict(outcomes),
                          seconds=round(seconds, 3),
                          per_second=round(transfers / seconds, 1) if seconds else 0.0)
