"""The bank checker on crafted histories: a valid run, then one broken invariant at a time,
which the checker must name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import pytest

from quorapay.api.schema import DigestInfo
from quorapay.check.checker import Evidence, Verdict, check_bank
from quorapay.check.history import Event, Fail, Info, Invoke, Nemesis, Ok, TransferBody
from quorapay.core.digest import log_digest, replay
from quorapay.core.hlc import Timestamp
from quorapay.core.types import (
    AccountId,
    Cents,
    Commands,
    CreateAccount,
    Epoch,
    EpochStart,
    LogEntry,
    LogIndex,
    NodeId,
    Transfer,
    TransferId,
)


def transfer(tid: str, debit: str, credit: str, amount: int) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(debit), credit=AccountId(credit),
                    amount=Cents(amount), currency="USD")


def entry(index: int, epoch: int, payload: Any, wall_ms: int = 1_800_000_000_000) -> LogEntry:
    return LogEntry(index=LogIndex(index), epoch=Epoch(epoch), payload=payload,
                    ts=Timestamp(wall_ms + index, 0))


BULK = [transfer(f"bulk{i}", "a", "b", 1) for i in range(25)]
LOG = [
    entry(1, 1, EpochStart(leader=NodeId("n1"))),
    entry(2, 1, Commands(commands=(CreateAccount(id=AccountId("bank"), currency="USD",
                                                 allow_negative=True),
                                   CreateAccount(id=AccountId("a"), currency="USD"),
                                   CreateAccount(id=AccountId("b"), currency="USD")))),
    entry(3, 1, Commands(commands=(transfer("fund", "bank", "a", 100),))),
    entry(4, 1, Commands(commands=(transfer("t1", "a", "b", 30), transfer("t2", "a", "b", 500)))),
    entry(5, 2, EpochStart(leader=NodeId("n2"))),
    entry(6, 2, Commands(commands=tuple(BULK))),
]


def body(t: Transfer) -> TransferBody:
    return TransferBody(id=t.id, debit=t.debit, credit=t.credit, amount=t.amount)


def history() -> list[Event]:
    events: list[Event] = [Nemesis(time=0.5, fault="kill", phase="start", detail="n1")]
    op = 0

    def transfer_op(t: Transfer, done: Event) -> None:
        nonlocal op
        op += 1
        events.append(Invoke(process=1, op=op, f="transfer", time=float(op), transfer=body(t)))
        events.append(msgspec.structs.replace(done, op=op, time=op + 0.5))

    transfer_op(transfer("t1", "a", "b", 30),
                Ok(process=1, op=0, f="transfer", time=0, index=4, epoch=1, status="ok"))
    transfer_op(transfer("t2", "a", "b", 500), Fail(process=1, op=0, f="transfer", time=0,
                                                    status="insufficient_funds", index=4))
    transfer_op(transfer("t9", "a", "b", 1),
                Info(process=1, op=0, f="transfer", time=0, error="timeout"))
    for t in BULK:
        transfer_op(t, Ok(process=1, op=0, f="transfer", time=0, index=6, epoch=2, status="ok"))
    op += 1
    events.append(Invoke(process=2, op=op, f="read", time=float(op)))
    events.append(Ok(process=2, op=op, f="read", time=op + 0.5, index=6, epoch=2,
                     balances={"a": 45, "b": 55, "bank": -100}))
    return events


def evidence(**changes: Any) -> Evidence:
    digest = DigestInfo(node="n", index=len(LOG), log_digest=log_digest(LOG),
                        state_digest=replay(LOG).digest(), stored_state_digest=replay(LOG).digest(),
                        totals={"USD": 0})
    base = Evidence(history=history(), logs={"n1": list(LOG), "n2": list(LOG), "n3": list(LOG)},
                    digests={n: digest for n in ("n1", "n2", "n3")}, liveness=2.5,
                    liveness_bound=10.0)
    return replace(base, **changes)


def failed_checks(e: Evidence) -> set[str]:
    report = check_bank(e)
    assert report.verdict is Verdict.INVALID, report
    return {c.name for c in report.checks if not c.ok}


def test_a_valid_run_is_valid() -> None:
    report = check_bank(evidence())
    assert report.verdict is Verdict.VALID, [c for c in report.checks if not c.ok]
    assert report.stats["acknowledged_transfers"] == 26
    assert "2.50s after healing" in report.liveness


def with_event(index: int, event: Event) -> list[Event]:
    events = history()
    events[index] = event
    return events


def completion(kind: type, **fields: Any) -> tuple[int, Event]:
    """The first completion of `kind` in the history, with fields changed."""
    events = history()
    for position, event in enumerate(events):
        if isinstance(event, kind):
            return position, msgspec.structs.replace(event, **fields)
    raise AssertionError(kind)


def with_read(**fields: Any) -> list[Event]:
    """The history, with its read (the last event) changed."""
    events = history()
    return [*events[:-1], msgspec.structs.replace(events[-1], **fields)]


def on_every_node(log: list[LogEntry]) -> dict[str, list[LogEntry]]:
    return {n: list(log) for n in ("n1", "n2", "n3")}


def digest_of(node: str, **fields: Any) -> dict[str, DigestInfo]:
    digests = evidence().digests
    return {**digests, node: msgspec.structs.replace(digests[node], **fields)}


def chained(*ids: str) -> list[Event]:
    """The history, as if the transfers `ids` had been sent as one linked chain."""
    return [msgspec.structs.replace(e, chain=ids[0])
            if isinstance(e, Invoke) and e.transfer is not None and e.transfer.id in ids else e
            for e in history()]


FORKED = [*LOG[:4], entry(5, 3, EpochStart(leader=NodeId("n3")))]
TWO_LEADERS = [*LOG[:4], entry(5, 1, EpochStart(leader=NodeId("n3"))), LOG[5]]
BACKWARDS = [*LOG[:5], msgspec.structs.replace(LOG[5], ts=LOG[3].ts)]


@pytest.mark.parametrize(("name", "change"), [
    ("committed logs agree", lambda: {"logs": {**on_every_node(LOG), "n2": FORKED}}),
    ("ledgers converge",
     lambda: {"digests": digest_of("n2", stored_state_digest="x" * 64, state_digest="x" * 64)}),
    ("no transfer applied twice",
     lambda: {"digests": digest_of("n3", stored_state_digest="y" * 64)}),
    ("one leader per epoch", lambda: {"logs": on_every_node(TWO_LEADERS)}),
    ("acknowledged transfers applied once",
     lambda: {"history": with_event(*completion(Ok, index=3))}),
    ("failed transfers not applied", lambda: {"history": with_event(
        2, Fail(process=1, op=1, f="transfer", time=1.5, status="unavailable"))}),
    ("replay reproduces every result",
     lambda: {"history": with_event(*completion(Fail, status="account_not_found"))}),
    ("reads match the replayed state",
     lambda: {"history": with_read(balances={"a": 46, "b": 54, "bank": -100})}),
    ("no stale reads",
     lambda: {"history": with_read(index=4, balances={"a": 70, "b": 30, "bank": -100})}),
    ("money conserved",
     lambda: {"history": with_read(balances={"a": 45, "b": 55, "bank": -99})}),
    ("no forbidden negative balance",
     lambda: {"history": with_read(balances={"a": -5, "b": 105, "bank": -100})}),
    ("timestamps increase with the index", lambda: {"logs": on_every_node(BACKWARDS)}),
    ("linked chains apply all or nothing", lambda: {"history": chained("t1", "t2")}),
    ("account limits kept at every index",
     lambda: {"history": with_read(balances={"a": -5, "b": 105, "bank": -100})}),
])
def test_each_broken_invariant_is_named(name: str, change: Any) -> None:
    assert name in failed_checks(evidence(**change()))


def test_no_write_after_healing_is_invalid() -> None:
    report = check_bank(evidence(liveness=None))
    assert report.verdict is Verdict.INVALID
    assert "no write succeeded" in report.liveness


def test_too_few_operations_or_no_fault_is_inconclusive() -> None:
    few = [e for e in history() if not (isinstance(e, Ok | Invoke) and e.op > 5)]
    assert check_bank(evidence(history=few)).verdict is Verdict.INCONCLUSIVE
    calm = [e for e in history() if not isinstance(e, Nemesis)]
    assert check_bank(evidence(history=calm)).verdict is Verdict.INCONCLUSIVE


def test_an_id_conflict_is_not_a_failed_transfer_applied() -> None:
    # Another body under an existing id fails with id_conflict: that body was never applied.
    events = history()
    other = TransferBody(id="t1", debit="a", credit="b", amount=31)
    events += [Invoke(process=3, op=1, f="transfer", time=90.0, transfer=other),
               Fail(process=3, op=1, f="transfer", time=90.5, status="id_conflict")]
    assert check_bank(evidence(history=events)).verdict is Verdict.VALID


def test_entries_a_node_compacted_unread_are_taken_from_another_node() -> None:
    # n3 installed a snapshot before the tap read its first entries: n1 and n2 cover them.
    logs = {**on_every_node(LOG), "n3": list(LOG[3:])}
    report = check_bank(evidence(logs=logs))
    assert report.verdict is Verdict.VALID, [c for c in report.checks if not c.ok]


def test_a_divergent_entry_after_a_gap_is_still_found() -> None:
    forged = msgspec.structs.replace(LOG[4], epoch=LOG[4].epoch + 7)
    logs = {**on_every_node(LOG), "n3": [*LOG[3:4], forged, *LOG[5:]]}
    assert "committed logs agree" in failed_checks(evidence(logs=logs))


def test_entries_compacted_on_every_node_unread_make_the_run_unknown() -> None:
    logs = {n: list(LOG[2:]) for n in ("n1", "n2", "n3")}
    report = check_bank(evidence(logs=logs))
    assert report.verdict is Verdict.UNKNOWN
    assert "compacted on every node" in report.reason and "the first 1" in report.reason
