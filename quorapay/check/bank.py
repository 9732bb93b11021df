"""`quorapay check bank`: transfers and reads from concurrent clients under a nemesis, then heal,
converge, collect every node's committed log, and check the history against it.

Results go to a directory: `history.jsonl` (every invoke/ok/fail/info and fault), the node logs,
and `report.json` / `report.txt`.
"""

from __future__ import annotations

import itertools
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio

from quorapay.api import schema as api
from quorapay.api.schema import AccountSpec, TransferSpec
from quorapay.check.checker import BankReport, Evidence, check_bank
from quorapay.check.history import Event, Fail, Info, Invoke, Nemesis, Ok, TransferBody, encode
from quorapay.check.log_tap import LogTap
from quorapay.check.nemesis import BankNemesis, undo_everything
from quorapay.client import Client, ClientError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.interrupt import NEVER, Interrupt
from quorapay.security.access import ask_node, cluster_client
from quorapay.verify.collect import settled_statuses

ISSUER = "bank"
FUNDING = 1000
PENDING_TIMEOUT_MS = 2000  # the bank workload's pending transfers expire after this
READ_SHARE = 0.2
OP_DEADLINE = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """What a scenario gets: the cluster, the clock and recorder of the history, and the time
    the workload stops."""

    cluster: ClusterConfig
    record: Callable[[Event], None]
    now: Callable[[], float]
    stop_at: float
    accounts: list[str]  # the run's own (its issuer aside)
    run: str  # the prefix of its ids
    first_ack_after: Callable[[float], Awaitable[float]]  # seconds from a moment to an ack
    stall: Callable[[float, float], float]  # the longest time without an ack in a window
    acks: Callable[[float, float], int]  # transfers acknowledged within a window


Scenario = Callable[[Stage], Awaitable[dict[str, float]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BankOptions:
    seconds: float = 60.0
    clients: int = 5
    accounts: int = 8
    nemesis: tuple[str, ...] = ("kill", "pause", "partition", "zk")
    seed: int = 1
    results: Path | None = None
    liveness_bound: float = 30.0
    fault_interval: tuple[float, float] = (2.0, 5.0)
    fault_duration: tuple[float, float] = (2.0, 8.0)
    scenario: Scenario | None = None  # scripted faults instead of the random nemesis


@dataclass(frozen=True, slots=True, kw_only=True)
class BankOutcome:
    report: BankReport
    results: Path
    measurements: dict[str, float]
    interrupted: bool = False  # stopped early by Ctrl-C: the report checks what happened


class _History:
    def __init__(self, path: Path) -> None:
        self.events: list[Event] = []
        self._file = open(path, "wb")  # noqa: SIM115  (closed in close())
        self._started = time.monotonic()
        self._acked = trio.Event()  # set (and replaced) whenever a transfer is acknowledged
        self.last_ack = -1.0
        self._ack_times: list[float] = []
        self.failed = 0
        self.faults = 0  # injected so far
        self.active: dict[str, str] = {}  # fault kind -> detail, while in effect

    def now(self) -> float:
        return round(time.monotonic() - self._started, 6)

    def record(self, event: Event) -> None:
        self.events.append(event)
        self._file.write(encode(event))
        if isinstance(event, Fail | Info):
            self.failed += 1
        if isinstance(event, Nemesis):
            if event.phase == "start":
                self.faults += 1
                self.active[event.fault] = event.detail
            else:
                self.active.pop(event.fault, None)
        if isinstance(event, Ok) and event.f == "transfer":
            self.last_ack = event.time
            self._ack_times.append(event.time)
            self._acked.set()
            self._acked = trio.Event()

    def stall(self, since: float, until: float) -> float:
        """The longest time within [since, until] in which no client was told a transfer is ok,
        counting from `since`: what clients saw of an outage that began then."""
        moments = [since, *(t for t in self._ack_times if since < t <= until)]
        if len(moments) == 1:
            return round(until - since, 3)
        return round(max(b - a for a, b in itertools.pairwise(moments)), 3)

    def summary(self) -> str:
        """How the test goes, for a progress line."""
        now = self.now()
        rate = self.acks(now - 2.0, now) / 2.0
        faults = "; ".join(f"{k}: {d}" for k, d in self.active.items()) or "none in effect"
        return (f"{rate:.0f} acks/s, {len(self._ack_times)} acked, {self.failed} failed or "
                f"unknown; {self.faults} fault(s) injected, {faults}")

    def acks(self, since: float, until: float) -> int:
        return sum(1 for t in self._ack_times if since < t <= until)

    async def first_ack_after(self, moment: float) -> float:
        """Seconds from `moment` until a client was told a transfer is ok."""
        while self.last_ack <= moment:
            await self._acked.wait()
        return round(self.last_ack - moment, 3)

    def close(self) -> None:
        self._file.close()


async def run_bank(cluster: ClusterConfig, options: BankOptions,
                   interrupt: Interrupt = NEVER,
                   on_progress: Callable[[float, str], None] = lambda *_: None
                   ) -> BankOutcome:
    """Run the workload under the nemesis (or scenario), undo every fault, and check the history
    against every node's committed log. Interrupted (Ctrl-C), the clients stop after the
    operation each has in flight, the faults are undone, and the history so far is checked."""
    results = options.results or (cluster.run_dir.parent / "results"
                                  / time.strftime("bank-%Y%m%d-%H%M%S"))
    results.mkdir(parents=True, exist_ok=True)
    history = _History(results / "history.jsonl")
    rng = random.Random(options.seed)
    run_id = results.name  # transfer ids are unique per run: runs can share a cluster
    # the run's own accounts: any other run, workload or benchmark may share the cluster
    issuer = f"{run_id}-{ISSUER}"
    accounts = [f"{run_id}-acct-{i}" for i in range(1, options.accounts + 1)]
    tap = LogTap(cluster)
    try:
        async with trio.open_nursery() as background:
            background.start_soon(tap.run)  # reads the logs before compaction forgets them
            await _setup(cluster, issuer, accounts)
            stop_at = history.now() + options.seconds
            measurements: dict[str, float] = {}
            faults = trio.CancelScope()  # the nemesis or scenario: stopped by an interrupt
            background.start_soon(_cancel_on, interrupt, faults)
            background.start_soon(_report, history, on_progress)
            with interrupt.work():
                async with trio.open_nursery() as nursery:
                    for process in range(1, options.clients + 1):
                        nursery.start_soon(_client, f"{run_id}-p{process}", process, cluster,
                                           issuer, accounts, random.Random(rng.random()),
                                           history, stop_at, interrupt)
                    with faults:
                        measurements = await _inject(cluster, options, stage=Stage(
                            cluster=cluster, record=history.record, now=history.now,
                            stop_at=stop_at, accounts=accounts, run=run_id,
                            first_ack_after=history.first_ack_after, stall=history.stall,
                            acks=history.acks), rng=rng)
            undo_everything(cluster)
            liveness = None if interrupt.happened else \
                await _liveness(cluster, options.liveness_bound)
            background.cancel_scope.cancel()
        evidence = await _collect(cluster, history.events, liveness, options, tap)
        evidence.liveness_measured = not interrupt.happened
    finally:
        history.close()
    report = check_bank(evidence)
    _save(results, report, cluster)
    return BankOutcome(report=report, results=results, measurements=measurements,
                       interrupted=interrupt.happened)


async def _inject(cluster: ClusterConfig, options: BankOptions, *, stage: Stage,
                  rng: random.Random) -> dict[str, float]:
    """The scripted scenario, or the random nemesis until the workload stops."""
    if options.scenario is not None:
        return await options.scenario(stage)
    nemesis = BankNemesis(cluster, options.nemesis, random.Random(rng.random()), stage.record,
                          stage.now, interval=options.fault_interval,
                          duration=options.fault_duration)
    await nemesis.run(stage.stop_at)
    return {}


async def _report(history: _History, on_progress: Callable[[float, str], None]) -> None:
    while True:
        on_progress(history.now(), history.summary())
        await trio.sleep(0.5)


async def _cancel_on(interrupt: Interrupt, scope: trio.CancelScope) -> None:
    await interrupt.requested.wait()
    scope.cancel()


async def _setup(cluster: ClusterConfig, issuer: str, accounts: list[str]) -> None:
    async with cluster_client(cluster, deadline=60) as client:
        opened = await client.create_accounts(
            [AccountSpec(id=issuer, allow_negative=True)] + [AccountSpec(id=a) for a in accounts])
        funded = await client.submit_transfers([
            TransferSpec(id=f"fund-{a}", debit=issuer, credit=a, amount=FUNDING)
            for a in accounts])
    failed = [r for r in opened + funded if r.status != "ok"]
    if failed:
        raise QuorapayError(f"cannot set up the bank test: {failed[0].id}: {failed[0].status} "
                            "(its accounts are named after its results dir: choose another "
                            "--results)")


async def _client(prefix: str, process: int, cluster: ClusterConfig, issuer: str,
                  accounts: list[str], rng: random.Random, history: _History, stop_at: float,
                  interrupt: Interrupt) -> None:
    op = 0
    pending: list[str] = []  # this client's pending transfers, to post or void
    async with cluster_client(cluster, deadline=OP_DEADLINE) as client:
        while history.now() < stop_at and not interrupt.happened:
            op += 1
            if rng.random() < READ_SHARE:
                await _read(client, process, op, [issuer, *accounts], history)
                continue
            bodies = _bodies(f"{prefix}-{op}", accounts, rng, pending)
            await _transfer(client, process, op, bodies, history)
            op += len(bodies) - 1


def _bodies(tid: str, accounts: list[str], rng: random.Random, pending: list[str]
            ) -> list[TransferBody]:
    """One write: a transfer mostly; else a linked chain of two, a balancing transfer, a
    pending transfer that expires in two seconds, or a post or void of an earlier one."""
    def body(transfer_id: str, *flags: str) -> TransferBody:
        debit, credit = rng.sample(accounts, 2)
        return TransferBody(id=transfer_id, debit=debit, credit=credit,
                            amount=rng.randint(1, 300), flags=list(flags))
    kind = rng.random()
    if kind < 0.1 and pending:
        pending_id = pending.pop(rng.randrange(len(pending)))
        flag = api.POST_PENDING if rng.random() < 0.6 else api.VOID_PENDING
        return [TransferBody(id=tid, debit="", credit="", amount=0, flags=[flag],
                             pending_id=pending_id)]
    if kind < 0.2:
        pending.append(tid)
        return [body(tid, api.PENDING)]
    if kind < 0.3:
        return [body(f"{tid}-a"), body(f"{tid}-b")]
    if kind < 0.35:
        return [body(tid, api.BALANCING_DEBIT)]
    return [body(tid)]


async def _transfer(client: Client, process: int, first_op: int, bodies: list[TransferBody],
                    history: _History) -> None:
    """One request of `bodies` (more than one: a linked chain), each its own op."""
    chain = bodies[0].id if len(bodies) > 1 else None
    ops = range(first_op, first_op + len(bodies))
    for op, body in zip(ops, bodies, strict=True):
        history.record(Invoke(process=process, op=op, f="transfer", time=history.now(),
                              transfer=body, chain=chain))
    specs = [TransferSpec(id=b.id, debit=b.debit or None, credit=b.credit or None,
                          amount=b.amount or None, flags=b.flags, linked=i < len(bodies) - 1,
                          pending_id=b.pending_id or None,
                          timeout_ms=PENDING_TIMEOUT_MS if api.PENDING in b.flags else None)
             for i, b in enumerate(bodies)]
    try:
        response = await client.request(api.SubmitTransfers(transfers=specs))
    except ClientError as exc:
        for op in ops:
            _failed(history, process, op, "transfer", exc)
        return
    for op, result in zip(ops, response.results or [], strict=True):
        if result.status == "ok":
            history.record(Ok(process=process, op=op, f="transfer", time=history.now(),
                              index=result.index or 0, epoch=response.epoch or 0, status="ok",
                              entry=response.index))
        else:
            history.record(Fail(process=process, op=op, f="transfer", time=history.now(),
                                status=result.status, index=result.index,
                                epoch=response.epoch, entry=response.index))


async def _read(client: Client, process: int, op: int, accounts: list[str],
                history: _History) -> None:
    history.record(Invoke(process=process, op=op, f="read", time=history.now()))
    try:
        response = await client.request(api.GetBalances(accounts=accounts))
    except ClientError as exc:
        _failed(history, process, op, "read", exc)
        return
    history.record(Ok(process=process, op=op, f="read", time=history.now(),
                      index=response.index or 0, epoch=response.epoch or 0,
                      balances={b.account: b.balance for b in response.balances or []}))


def _failed(history: _History, process: int, op: int, f: str, exc: ClientError) -> None:
    if exc.code == "TIMEOUT":
        history.record(Info(process=process, op=op, f=f, time=history.now(), error=str(exc)))
    else:
        history.record(Fail(process=process, op=op, f=f, time=history.now(),
                            status=str(exc.code).lower()))


async def _liveness(cluster: ClusterConfig, bound: float) -> float | None:
    """Seconds from now until a write commits, or None if none does within `bound`."""
    started = time.monotonic()
    try:
        async with cluster_client(cluster, deadline=bound) as client:
            await client.barrier()
    except ClientError:
        return None
    return round(time.monotonic() - started, 3)


async def _collect(cluster: ClusterConfig, events: list[Event], liveness: float | None,
                   options: BankOptions, tap: LogTap, attempts: int = 5) -> Evidence:
    """Every node's log and digest, read once the nodes agree on one applied index -- again
    if an entry was appended while they were read (an idle leader's entry that expires a
    reservation, say), so that every node is read at one index."""
    for _ in range(attempts):
        evidence = await _read_nodes(cluster, events, liveness, options, tap)
        ends = {d.index for d in evidence.digests.values()} | {
            log[-1].index for log in evidence.logs.values() if log}
        if len(ends) <= 1:
            break
    return evidence


async def _read_nodes(cluster: ClusterConfig, events: list[Event], liveness: float | None,
                      options: BankOptions, tap: LogTap) -> Evidence:
    found = await settled_statuses(cluster, 30.0)
    evidence = Evidence(history=events, logs={}, liveness=liveness,
                        liveness_bound=options.liveness_bound,
                        nemesis_requested=bool(options.nemesis))
    for node_id, status in found.items():
        if isinstance(status, str):
            evidence.unreachable[node_id] = status
            continue
        try:
            await _read_rest(tap, node_id)
            evidence.logs[node_id] = list(tap.logs[node_id])
            evidence.skipped[node_id] = list(tap.skipped[node_id])
            digest = (await ask_node(cluster, cluster.node(node_id), api.Digest(deep=True),
                                     timeout=30)).digest
            assert digest is not None
            evidence.digests[node_id] = digest
        except ClientError as exc:
            evidence.unreachable[node_id] = str(exc)
    return evidence


async def _read_rest(tap: LogTap, node_id: str, attempts: int = 3) -> None:
    """The entries the tap has not read yet (retried: the node may compact meanwhile)."""
    for attempt in range(attempts):
        try:
            await tap.read(node_id, timeout=30)
            return
        except ClientError:
            if attempt == attempts - 1:
                raise


def _save(results: Path, report: BankReport, cluster: ClusterConfig) -> None:
    (results / "report.json").write_bytes(msgspec.json.encode(report))
    (results / "report.txt").write_text(describe(report) + "\n")
    logs = results / "logs"
    logs.mkdir(exist_ok=True)
    for node in cluster.nodes:
        source = supervisor.node_process(cluster, node).log_file
        if source.exists():
            shutil.copy(source, logs / source.name)


def describe(report: BankReport) -> str:
    stats = report.stats
    lines = [f"{report.verdict.value.upper()}" + (f": {report.reason}" if report.reason else ""),
             f"operations: {stats['invoked']} invoked, {stats['ok']} ok, {stats['fail']} fail, "
             f"{stats['info']} unknown; {stats['acknowledged_transfers']} transfers "
             f"acknowledged, {stats['reads']} reads; {stats['faults']} faults injected",
             f"liveness: {report.liveness}"]
    for check in report.checks:
        mark = "ok" if check.ok else "BROKEN"
        lines.append(f"  {mark:6} {check.name}")
        lines += [f"         - {problem}" for problem in check.problems[:5]]
    return "\n".join(lines)


def as_json(outcome: BankOutcome) -> dict[str, Any]:
    return {"results": str(outcome.results), "measurements": outcome.measurements,
            "interrupted": outcome.interrupted, **msgspec.to_builtins(outcome.report)}
