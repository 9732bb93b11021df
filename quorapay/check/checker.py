"""The bank checker: pure functions over a history and the nodes' committed logs.

It replays the committed log through the real ledger and holds every answer clients were given
against it. Each check is named in the report:

- committed logs agree: every node's applied log is a prefix of one log; all end at one index.
- ledgers converge: every node's ledger is the same.
- no transfer applied twice: every node's own ledger equals the replay of its log, in which the
  ledger decides each id once -- no acknowledged transfer counted twice, no unknown one more
  than once.
- one leader per epoch: the epoch-start entries of an epoch all name one leader, and each
  (index, epoch) a client was told is that entry's.
- acknowledged transfers applied once: each transfer acknowledged ok is decided ok, at the index
  told.
- failed transfers not applied: a transfer that failed definitively is absent, or decided with
  the outcome told.
- replay reproduces every result: the replay gives each command the status its client was told.
- reads match the replayed state: every read equals the replayed balances at its index.
- no stale reads: a read that began after a transfer was acknowledged reflects it.
- money conserved: each currency sums to zero after every entry, and in every read.
- no forbidden negative balance: no read shows an account that is not an issuer below zero.
- the ledger rules of `quorapay.check.ledger_rules`, each checked on every entry of the replay
  from its rows (balances move only by ok transfers, money conserved counting pending, pending
  transfers resolved exactly once, a post never exceeds its reservation, linked chains apply all
  or nothing, account limits kept at every index); the last two also on what clients were told
  (a chain acknowledged in part) and saw (a read past an account's limit).

Liveness -- after healing, how long until a write succeeded -- is reported separately. A run
with too few acknowledged transfers, or a nemesis that injected nothing, is inconclusive.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise

from quorapay.api.schema import DigestInfo
from quorapay.check.history import Event, Fail, Info, Invoke, Nemesis, Ok
from quorapay.check.ledger_rules import CHAINS, LIMITS, RULES, LedgerRules
from quorapay.core.ledger import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Delta,
    Ledger,
    Status,
)
from quorapay.core.types import Commands, EpochStart, LogEntry, PayerTransfer, Transfer

MIN_ACKNOWLEDGED = 20


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    INCONCLUSIVE = "inconclusive"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {"valid": 0, "invalid": 1, "inconclusive": 2, "unknown": 2}[self.value]


@dataclass(slots=True, kw_only=True)
class Evidence:
    history: list[Event]
    logs: dict[str, list[LogEntry]]  # each reachable node's applied entries, as read (in order)
    digests: dict[str, DigestInfo] = field(default_factory=dict)  # each node, at its applied
    unreachable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # compacted unread
    liveness: float | None = None  # seconds from healing until a write succeeded
    liveness_bound: float = 30.0
    liveness_measured: bool = True  # False when the run was interrupted: nothing to judge
    nemesis_requested: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class BankReport:
    verdict: Verdict
    checks: tuple[Check, ...]
    liveness: str
    stats: dict[str, int]
    reason: str = ""


def check_bank(evidence: Evidence) -> BankReport:
    stats = _stats(evidence.history)
    log, missing = merged(evidence.logs)
    if missing:
        return BankReport(
            verdict=Verdict.UNKNOWN, checks=(), liveness=_liveness(evidence), stats=stats,
            reason=f"{len(missing)} entries (the first {missing[0]}) were compacted on every "
                   f"node before the checker could read them; the replay needs every entry "
                   f"(a larger storage.compact_retain gives the checker time to read them)")
    invokes = {(e.process, e.op): e for e in evidence.history if isinstance(e, Invoke)}
    completions = [e for e in evidence.history if isinstance(e, Ok | Fail | Info)]
    replay = _Replay(log)
    replay.run({c.index for c in completions if isinstance(c, Ok) and c.f == "read"},
               {d.index for d in evidence.digests.values()})
    checks = [
        Check(name="committed logs agree", problems=tuple(_logs_agree(evidence.logs))),
        Check(name="ledgers converge", problems=tuple(_converged(evidence))),
        Check(name="no transfer applied twice",
              problems=tuple(_self_consistent(evidence, replay))),
        Check(name="one leader per epoch", problems=tuple(
            replay.leader_problems + _epochs_match(log, completions))),
        *_transfer_checks(replay, invokes, completions),
        Check(name="reads match the replayed state",
              problems=tuple(replay.read_problems(completions))),
        Check(name="no stale reads", problems=tuple(_stale_reads(invokes, completions))),
        Check(name="money conserved",
              problems=tuple(replay.money_problems + _read_totals(completions))),
        Check(name="no forbidden negative balance",
              problems=tuple(replay.negative_problems + _negative_reads(replay, completions))),
        Check(name="timestamps increase with the index", problems=tuple(_stamps_increase(log))),
        *_rule_checks(replay, invokes, completions),
    ]
    liveness = _liveness(evidence)
    verdict, reason = _verdict(evidence, checks, stats, liveness)
    return BankReport(verdict=verdict, checks=tuple(checks), liveness=liveness, stats=stats,
                      reason=reason)


# ---------------------------------------------------------------------------- the replay

class _Replay:
    """The committed log through the real ledger, remembering what the checks need."""

    def __init__(self, log: list[LogEntry]) -> None:
        self.ledger = Ledger()
        self.decided: dict[str, list[tuple[int, str]]] = {}  # id -> [(index, status)] (new)
        self.bodies: dict[str, Transfer] = {}  # id -> the body it was decided with
        self.told: dict[tuple[int, str], str] = {}  # (index, id) -> the result given there
        self.leaders: dict[int, str] = {}
        self.leader_problems: list[str] = []
        self.money_problems: list[str] = []
        self.negative_problems: list[str] = []
        self.states: dict[int, dict[str, int]] = {}  # index -> balances, where reads need it
        self.digests: dict[int, str] = {}  # index -> ledger digest, where nodes report one
        self.rules = LedgerRules()
        self.rule_problems: dict[str, list[str]] = {rule: [] for rule in RULES}
        self._log = log

    def run(self, read_indexes: set[int], digest_indexes: frozenset[int] | set[int] = frozenset()
            ) -> None:
        if 0 in read_indexes:
            self.states[0] = {}
        if 0 in digest_indexes:
            self.digests[0] = self.ledger.digest()
        for entry in self._log:
            self._apply(entry)
            if entry.index in read_indexes:
                self.states[entry.index] = {a.id: a.balance for a in
                                            self.ledger.accounts.values()}
            if entry.index in digest_indexes:
                self.digests[entry.index] = self.ledger.digest()

    def _apply(self, entry: LogEntry) -> None:
        if isinstance(entry.payload, EpochStart):
            leader = self.leaders.setdefault(entry.epoch, entry.payload.leader)
            if leader != entry.payload.leader:
                self.leader_problems.append(f"epoch {entry.epoch} started by both {leader} and "
                                            f"{entry.payload.leader}")
        delta = Delta()
        results = self.ledger.apply(entry, delta)
        commands = entry.payload.commands if isinstance(entry.payload, Commands) else ()
        for command, result in zip(commands, results, strict=True):
            if isinstance(command, Transfer | PayerTransfer):
                self.told[(entry.index, command.id)] = result.status.value
            for member, told in zip(getattr(command, "commands", ()), result.members,
                                    strict=True):
                self.told[(entry.index, member.id)] = told.status.value
        for rule, problem in self.rules.check(entry, results, delta):
            self.rule_problems[rule].append(problem)
        for record in delta.transfers:
            self.decided.setdefault(record.transfer.id, []).append(
                (entry.index, record.status.value))
            self.bodies[record.transfer.id] = record.transfer
        totals = self.ledger.totals()
        if any(totals.values()) and not self.money_problems:
            self.money_problems.append(f"after index {entry.index} balances sum to {totals}")
        for account in delta.accounts.values():
            if account.balance < 0 and not account.allow_negative:
                self.negative_problems.append(f"{account.id} is at {account.balance} after "
                                              f"index {entry.index}")

    def read_problems(self, completions: list[Ok | Fail | Info]) -> list[str]:
        reads = [c for c in completions if isinstance(c, Ok) and c.f == "read"]
        problems = []
        for read in reads:
            state = self.states.get(read.index)
            if state is None:
                problems.append(f"read {read.op} of process {read.process} reports index "
                                f"{read.index}, beyond the committed log")
                continue
            seen = read.balances or {}
            expected = {a: state.get(a, 0) for a in seen}
            if seen != expected:
                wrong = sorted(a for a in seen if seen[a] != expected[a])
                problems.append(f"read {read.op} of process {read.process} at index {read.index}"
                                f" saw {wrong[0]}={seen[wrong[0]]}, the replay has "
                                f"{expected[wrong[0]]}")
        return problems


def _rule_checks(replay: _Replay, invokes: dict[tuple[int, int], Invoke],
                 completions: list[Ok | Fail | Info]) -> list[Check]:
    """The ledger rules on the replay, and on what clients were told and saw."""
    told = dict(replay.rule_problems)
    told[CHAINS] = told[CHAINS] + _chains_told(invokes, completions)
    told[LIMITS] = told[LIMITS] + _limits_seen(replay, completions)
    return [Check(name=rule, problems=tuple(told[rule][:10])) for rule in RULES]


def _chains_told(invokes: dict[tuple[int, int], Invoke],
                 completions: list[Ok | Fail | Info]) -> list[str]:
    """Chains whose members clients were told ok and failed alike."""
    outcomes: dict[str, set[bool]] = {}
    for done in completions:
        invoked = invokes.get((done.process, done.op))
        if invoked is not None and invoked.chain and isinstance(done, Ok | Fail):
            outcomes.setdefault(invoked.chain, set()).add(isinstance(done, Ok))
    return [f"the chain of {chain} was acknowledged in part"
            for chain, seen in sorted(outcomes.items()) if len(seen) > 1]


def _limits_seen(replay: _Replay, completions: list[Ok | Fail | Info]) -> list[str]:
    """Reads that saw an account past a limit (its balance alone: reads show no pending)."""
    limited: dict[str, int] = {a.id: a.flags for a in replay.ledger.accounts.values()}
    return [f"read {c.op} of process {c.process} saw {account} at {balance}"
            for c in completions if isinstance(c, Ok) and c.f == "read" and c.balances
            for account, balance in c.balances.items()
            if (balance < 0 and limited.get(account, 0) & DEBITS_MUST_NOT_EXCEED_CREDITS)
            or (balance > 0 and limited.get(account, 0) & CREDITS_MUST_NOT_EXCEED_DEBITS)]


def _transfer_checks(replay: _Replay, invokes: dict[tuple[int, int], Invoke],
                     completions: list[Ok | Fail | Info]) -> list[Check]:
    acknowledged: list[str] = []
    failed: list[str] = []
    results: list[str] = []
    for done in completions:
        invoked = invokes.get((done.process, done.op))
        if invoked is None or invoked.transfer is None:
            continue
        tid = invoked.transfer.id
        sent = invoked.transfer
        decided = replay.bodies.get(tid)
        same = decided is not None and ((decided.debit, decided.credit, decided.amount) == (
            sent.debit, sent.credit, sent.amount) or (  # a post or void: recorded filled in
            bool(sent.pending_id) and decided.pending_id == sent.pending_id))
        decisions = replay.decided.get(tid, []) if same else []  # of this body, not another's
        if isinstance(done, Ok):
            if not decisions or decisions[0] != (done.index, Status.OK.value):
                acknowledged.append(f"transfer {tid} was acknowledged ok at index {done.index} "
                                    f"but the log decides it {decisions or 'never'}")
            answered = done.entry or done.index
            told = replay.told.get((answered, tid))
            if told != done.status:
                results.append(f"transfer {tid} was told {done.status} at index {answered}; "
                               f"the replay says {told}")
        elif isinstance(done, Fail):
            if decisions and decisions[0][1] == Status.OK.value:
                failed.append(f"transfer {tid} failed ({done.status}) but was applied at index "
                              f"{decisions[0][0]}")
            told_at = done.entry or done.index
            if told_at is not None and replay.told.get((told_at, tid)) != done.status:
                results.append(f"transfer {tid} was told {done.status} at index {told_at}; "
                               f"the replay says {replay.told.get((told_at, tid))}")
    return [Check(name="acknowledged transfers applied once", problems=tuple(acknowledged)),
            Check(name="failed transfers not applied", problems=tuple(failed)),
            Check(name="replay reproduces every result", problems=tuple(results))]


# ---------------------------------------------------------------------------- the rest

def merged(logs: dict[str, list[LogEntry]]) -> tuple[list[LogEntry], list[int]]:
    """The committed log from every node's entries (the longest log's first), and the indexes
    no node's entries cover. Whether the nodes agree is `_logs_agree`'s question."""
    by_index: dict[int, LogEntry] = {}
    for log in sorted(logs.values(), key=_last_index, reverse=True):
        for entry in log:
            by_index.setdefault(entry.index, entry)
    last = max(by_index, default=0)
    missing = [i for i in range(1, last + 1) if i not in by_index]
    return [by_index[i] for i in range(1, last + 1) if i in by_index], missing


def _stamps_increase(log: list[LogEntry]) -> list[str]:
    return [f"entry {b.index} has timestamp {b.ts}, not above entry {a.index}'s {a.ts}"
            for a, b in pairwise(log) if b.index == a.index + 1 and not a.ts < b.ts][:10]


def _last_index(log: list[LogEntry]) -> int:
    return log[-1].index if log else 0


def _logs_agree(logs: dict[str, list[LogEntry]]) -> list[str]:
    if not logs:
        return ["no node's log could be read"]
    reference_node, reference = max(logs.items(), key=lambda item: _last_index(item[1]))
    theirs = {e.index: e for e in reference}
    problems = []
    for node, log in sorted(logs.items()):
        differs = next((e.index for e in log if e.index in theirs and e != theirs[e.index]),
                       None)
        if differs is not None:
            problems.append(f"{node} and {reference_node} differ at index {differs}")
        elif _last_index(log) != _last_index(reference):
            problems.append(f"{node} applied {_last_index(log)} entries, {reference_node} "
                            f"{_last_index(reference)}: they did not converge")
    return problems


def _converged(evidence: Evidence) -> list[str]:
    problems = [f"{node} could not be read: {why}" for node, why in evidence.unreachable.items()]
    states = {n: d.stored_state_digest or d.state_digest or "?"
              for n, d in evidence.digests.items()}
    if len(set(states.values())) > 1:
        problems.append("the nodes' ledgers differ: "
                        + ", ".join(f"{n} {digest[:12]}" for n, digest in sorted(states.items())))
    return problems


def _self_consistent(evidence: Evidence, replay: _Replay) -> list[str]:
    return [f"{node}: its ledger differs from the replay of the committed log to its applied "
            f"index {digest.index} (a transfer applied twice, or a balance changed outside the "
            f"log)"
            for node, digest in sorted(evidence.digests.items())
            if any(state is not None and state != replay.digests.get(digest.index)
                   for state in (digest.stored_state_digest, digest.recounted_state_digest))]


def _negative_reads(replay: _Replay, completions: list[Ok | Fail | Info]) -> list[str]:
    issuers = {a.id for a in replay.ledger.accounts.values() if a.allow_negative}
    return [f"read {c.op} of process {c.process} saw {account} at {balance}"
            for c in completions if isinstance(c, Ok) and c.f == "read" and c.balances
            for account, balance in c.balances.items() if balance < 0 and account not in issuers]


def _epochs_match(log: list[LogEntry], completions: list[Ok | Fail | Info]) -> list[str]:
    problems = []
    for done in completions:
        if isinstance(done, Ok) and done.f == "transfer":
            answered = done.entry or done.index
            if 1 <= answered <= len(log) and log[answered - 1].epoch != done.epoch:
                problems.append(f"op {done.op} of process {done.process} was answered by "
                                f"index {answered} in epoch {done.epoch}; that entry is of "
                                f"epoch {log[answered - 1].epoch}")
    return problems


def _stale_reads(invokes: dict[tuple[int, int], Invoke],
                 completions: list[Ok | Fail | Info]) -> list[str]:
    acks = sorted((c.time, c.index) for c in completions
                  if isinstance(c, Ok) and c.f == "transfer")
    times = [time for time, _ in acks]
    highest: list[int] = []
    for _, index in acks:
        highest.append(max(index, highest[-1] if highest else 0))
    problems = []
    for done in completions:
        if isinstance(done, Ok) and done.f == "read":
            began = invokes[(done.process, done.op)].time
            position = bisect.bisect_left(times, began)
            if position and highest[position - 1] > done.index:
                problems.append(f"read {done.op} of process {done.process} began after index "
                                f"{highest[position - 1]} was acknowledged, but reflects only "
                                f"{done.index}")
    return problems


def _read_totals(completions: list[Ok | Fail | Info]) -> list[str]:
    return [f"read {c.op} of process {c.process} saw balances summing to "
            f"{sum(c.balances.values())}"
            for c in completions if isinstance(c, Ok) and c.f == "read" and c.balances
            and sum(c.balances.values()) != 0]


def _liveness(evidence: Evidence) -> str:
    if not evidence.liveness_measured:
        return "not measured (the run was interrupted)"
    if evidence.liveness is None:
        return f"no write succeeded within {evidence.liveness_bound:g}s of healing"
    return (f"writes succeeded again {evidence.liveness:.2f}s after healing (bound "
            f"{evidence.liveness_bound:g}s)")


def _stats(history: list[Event]) -> dict[str, int]:
    stats: dict[str, int] = {"invoked": 0, "ok": 0, "fail": 0, "info": 0, "faults": 0,
                             "acknowledged_transfers": 0, "reads": 0}
    for event in history:
        match event:
            case Invoke():
                stats["invoked"] += 1
            case Ok(f=f):
                stats["ok"] += 1
                stats["acknowledged_transfers" if f == "transfer" else "reads"] += 1
            case Fail():
                stats["fail"] += 1
            case Info():
                stats["info"] += 1
            case Nemesis(phase="start"):
                stats["faults"] += 1
    return stats


def _verdict(evidence: Evidence, checks: list[Check], stats: dict[str, int], liveness: str
             ) -> tuple[Verdict, str]:
    if any(not c.ok for c in checks):
        return Verdict.INVALID, ", ".join(c.name for c in checks if not c.ok)
    if evidence.liveness_measured and (
            evidence.liveness is None or evidence.liveness > evidence.liveness_bound):
        return Verdict.INVALID, liveness
    if evidence.unreachable:
        return Verdict.UNKNOWN, "not every node could be read"
    if stats["acknowledged_transfers"] < MIN_ACKNOWLEDGED:
        return Verdict.INCONCLUSIVE, (f"only {stats['acknowledged_transfers']} transfers were "
                                      f"acknowledged (need {MIN_ACKNOWLEDGED})")
    if evidence.nemesis_requested and stats["faults"] == 0:
        return Verdict.INCONCLUSIVE, "the nemesis injected no fault"
    return Verdict.VALID, ""
