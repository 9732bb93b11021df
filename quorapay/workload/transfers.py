"""Random transfers between funded accounts, from concurrent clients, with a record of outcomes.

A run's accounts are its own: `<prefix>-bank` (an issuer) and `<prefix>-acct-1..N`, the prefix
being the run id unless told otherwise, so workloads, bank checks and benchmarks can follow one
another on one cluster as often as wanted. Transfer ids are `<run>-<n>`; each client retries with
the same ids across failover until its deadline, so a transfer is never applied twice. Every
outcome a client was told is appended to the record (JSONL, the format `quorapay verify
--acknowledged` reads) and flushed as it arrives; an unknown outcome is recorded as "unknown".
Ctrl-C (an `Interrupt`) stops the clients after the request each has in flight, recording it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

from quorapay.api.schema import AccountSpec, TransferSpec
from quorapay.client import Client, ClientError
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.interrupt import NEVER, Interrupt
from quorapay.security.access import cluster_client
from quorapay.verify.checks import Acknowledged

ISSUER = "bank"
FUNDING = 1_000_000


class WorkloadError(QuorapayError):
    """The workload cannot run as asked (its accounts conflict, its record is not writable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadReport:
    run: str
    transfers: int  # sent (all of them, unless interrupted)
    outcomes: dict[str, int]  # status -> count ("unknown" for no definitive answer)
    seconds: float
    per_second: float
    prefix: str = ""  # of the accounts it used
    interrupted: bool = False
    # attempts the clients retried, by why (Client.retried): TIMEOUT and LOST_WRITE were
    # unknown outcomes, resolved by the retry; NOT_LEADER and UNAVAILABLE changed nothing
    retries: dict[str, int] = field(default_factory=dict)


async def _open_record(path: Path) -> Any:  # trio.AsyncIOWrapper of a binary file
    """Open the record before any transfer is sent, so that outcomes are never lost."""
    try:
        return await trio.Path(path).open("ab")
    except OSError as exc:
        raise WorkloadError(f"cannot write the record file {path}: {exc.strerror}") from None


def issuer_id(prefix: str = "") -> str:
    return f"{prefix}-{ISSUER}" if prefix else ISSUER


def account_ids(count: int, prefix: str = "") -> list[str]:
    start = f"{prefix}-acct-" if prefix else "acct-"
    return [f"{start}{i}" for i in range(1, count + 1)]


async def setup_accounts(client: Client, count: int, currency: str = "USD", *,
                         prefix: str = "") -> None:
    """Create the issuer and `count` accounts, and fund each once (idempotent ids).

    Raises WorkloadError if an account exists with other attributes or a funding failed: the
    workload would otherwise run against accounts it does not control.
    """
    issuer, accounts = issuer_id(prefix), account_ids(count, prefix)
    created = await client.create_accounts(
        [AccountSpec(id=issuer, currency=currency, allow_negative=True)]
        + [AccountSpec(id=a, currency=currency) for a in accounts])
    funded = await client.submit_transfers([
        TransferSpec(id=f"fund-{a}", debit=issuer, credit=a, amount=FUNDING, currency=currency)
        for a in accounts])
    failed = [r for r in created + funded if r.status != "ok"]
    if failed:
        first = failed[0]
        raise WorkloadError(
            f"cannot set up the workload's accounts: {first.id}: {first.status}"
            + (f" ({first.detail})" if first.detail else "")
            + f"; it needs {issuer!r} as an issuer and {accounts[0]}..{accounts[-1]} in "
              f"{currency}, all its own (choose another --prefix)")


def plan(run: str, transfers: int, accounts: int, seed: int, prefix: str = ""
         ) -> list[TransferSpec]:
    rng = random.Random(seed)
    ids = account_ids(accounts, prefix)
    planned = []
    for n in range(1, transfers + 1):
        debit, credit = rng.sample(ids, 2)
        planned.append(TransferSpec(id=f"{run}-{n}", debit=debit, credit=credit,
                                    amount=rng.randint(1, 100)))
    return planned


async def run_workload(cluster: ClusterConfig, *, run: str, transfers: int, accounts: int,
                       clients: int, batch: int, seed: int, record: Path | None,
                       prefix: str | None = None, deadline: float = 60.0,
                       interrupt: Interrupt = NEVER,
                       on_progress: Callable[[int], None] = lambda _: None) -> WorkloadReport:
    """Run the workload; `on_progress(n)` after each answer, n transfers told so far."""
    prefix = run if prefix is None else prefix
    out = await _open_record(record) if record is not None else None
    try:
        async with cluster_client(cluster, deadline=deadline) as client:
            await setup_accounts(client, accounts, prefix=prefix)
        work = plan(run, transfers, accounts, seed, prefix)
        outcomes: Counter[str] = Counter()
        retries: Counter[str] = Counter()
        started = time.monotonic()

        async def told(chunk: list[TransferSpec], statuses: list[str]) -> None:
            lines = []
            for spec, status in zip(chunk, statuses, strict=True):
                outcomes[status] += 1
                lines.append(msgspec.json.encode(Acknowledged(
                    id=spec.id, debit=spec.debit or "", credit=spec.credit or "",
                    amount=spec.amount or 0, currency=spec.currency, status=status)) + b"\n")
            on_progress(sum(outcomes.values()))
            if out is not None:
                with trio.CancelScope(shield=True):  # an outcome a client was told is kept
                    await out.write(b"".join(lines))
                    await out.flush()

        async def worker(share: list[TransferSpec]) -> None:
            async with cluster_client(cluster, deadline=deadline) as client:
                for i in range(0, len(share), batch):
                    if interrupt.happened:
                        return
                    chunk = share[i:i + batch]
                    statuses = ["unknown"] * len(chunk)  # if cancelled before an answer
                    try:
                        statuses = [r.status for r in await client.submit_transfers(chunk)]
                    except ClientError as exc:
                        statuses = ["unknown" if exc.code == "TIMEOUT" else "unavailable"] \
                            * len(chunk)
                    finally:
                        await told(chunk, statuses)
                        retries.update(client.retried)
                        client.retried.clear()

        with interrupt.work():
            async with trio.open_nursery() as nursery:
                for c in range(clients):
                    nursery.start_soon(worker, work[c::clients])
        seconds = time.monotonic() - started
    finally:
        if out is not None:
            with trio.CancelScope(shield=True):
                await out.aclose()
    sent = sum(outcomes.values())
    return WorkloadReport(run=run, transfers=sent, outcomes=dict(outcomes),
                          seconds=round(seconds, 3),
                          per_second=round(sent / seconds, 1) if seconds else 0.0,
                          prefix=prefix, interrupted=interrupt.happened,
                          retries=dict(sorted(retries.items())))
