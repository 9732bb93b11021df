"""The ledger rules on crafted entries: the real ledger's rows keep every rule; each rule is
named when rows crafted to break it are checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import msgspec
import pytest

from quorapay.check.ledger_rules import (
    CHAINS,
    LIMITS,
    MOVES,
    PENDING_CONSERVED,
    POST_WITHIN,
    RESOLVED_ONCE,
    RULES,
    LedgerRules,
)
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Delta, Ledger, Result, Status
from quorapay.core.types import (
    PENDING,
    POST_PENDING,
    AccountId,
    Cents,
    Commands,
    CreateAccount,
    Epoch,
    Linked,
    LogEntry,
    LogIndex,
    Transfer,
    TransferId,
)
from tests.core.harness import account, transfer

Step = tuple[LogEntry, list[Result], Delta]


def pending(tid: str, amount: int, timeout_ms: int = 0) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId("a"), credit=AccountId("b"),
                    amount=Cents(amount), currency="USD", flags=PENDING, timeout_ms=timeout_ms)


def post(tid: str, pending_id: str, amount: int = 0) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(""), credit=AccountId(""),
                    amount=Cents(amount), currency="", flags=POST_PENDING,
                    pending_id=TransferId(pending_id))


COMMANDS = [
    (account("bank", issuer=True), account("a"), account("b"),
     CreateAccount(id=AccountId("card"), currency="USD", allow_negative=True,
                   credits_must_not_exceed_debits=True)),
    (transfer("fund", "bank", "a", 1000), transfer("spend", "card", "b", 50)),
    (pending("r1", 300), pending("r2", 200, 2500), pending("r3", 100, 2500)),
    (post("p1", "r1", 120), Linked(commands=(transfer("c1", "a", "b", 5),
                                             transfer("c2", "b", "card", 5)))),
    (Linked(commands=(transfer("c3", "a", "b", 5), transfer("c4", "b", "card", 500))),),
    (),  # the log's time passes: r2 and r3 expire
]


def steps() -> list[Step]:
    ledger, made = Ledger(), []
    for i, commands in enumerate(COMMANDS, 1):
        entry = LogEntry(index=LogIndex(i), epoch=Epoch(1), ts=Timestamp(1000 * i, 0),
                         payload=Commands(commands=commands))
        delta = Delta()
        made.append((entry, ledger.apply(entry, delta), delta))
    return made


def broken(made: list[Step]) -> set[str]:
    rules = LedgerRules()
    return {rule for entry, results, delta in made
            for rule, _ in rules.check(entry, results, delta)}


def test_the_ledgers_own_rows_keep_every_rule() -> None:
    made = steps()
    assert [r.transfer.id for r in made[-1][2].transfers] == ["r2#resolution", "r3#resolution"]
    assert {m.status for m in made[4][1][0].members} == {Status.LINKED_EVENT_FAILED,
                                                          Status.INSUFFICIENT_FUNDS}
    assert broken(made) == set()


def with_delta(position: int, change: Callable[[Delta], Delta]) -> list[Step]:
    made = steps()
    entry, results, delta = made[position]
    made[position] = (entry, results, change(delta))
    return made


def record(delta: Delta, tid: str, **fields) -> Delta:
    return replace(delta, transfers=[msgspec.structs.replace(r, **fields)
                                     if r.transfer.id == tid else r for r in delta.transfers])


def account_row(delta: Delta, account_id: str, **fields) -> Delta:
    accounts = dict(delta.accounts)
    accounts[AccountId(account_id)] = msgspec.structs.replace(accounts[AccountId(account_id)],
                                                              **fields)
    return replace(delta, accounts=accounts)


def twice(made: list[Step]) -> list[Step]:
    """The last entry expires r2 again, in a second entry."""
    entry, _, delta = made[-1]
    again = LogEntry(index=LogIndex(entry.index + 1), epoch=Epoch(1), ts=entry.ts,
                     payload=Commands(commands=()))
    return [*made, (again, [], replace(delta, transfers=delta.transfers[:1], accounts={}))]


@pytest.mark.parametrize(("rule", "crafted"), [
    (MOVES, lambda: with_delta(1, lambda d: account_row(d, "a", balance=999))),
    (MOVES, lambda: with_delta(4, lambda d: record(d, "c3", moved=5))),
    (PENDING_CONSERVED, lambda: with_delta(2, lambda d: account_row(d, "a",
                                                                    debits_pending=601))),
    (RESOLVED_ONCE, lambda: twice(steps())),
    (POST_WITHIN, lambda: with_delta(3, lambda d: record(d, "r1#resolution", moved=301))),
    (CHAINS, lambda: _chain_in_part()),
    (LIMITS, lambda: with_delta(1, lambda d: account_row(account_row(
        d, "card", balance=50), "b", balance=-50))),
])
def test_each_broken_rule_is_named(rule: str, crafted: Callable[[], list[Step]]) -> None:
    assert rule in RULES
    assert rule in broken(crafted())


def _chain_in_part() -> list[Step]:
    """The failed chain of entry 5 answered as if its first member had applied."""
    made = steps()
    entry, results, delta = made[4]
    chain = results[0]
    members = (replace(chain.members[0], status=Status.OK), *chain.members[1:])
    made[4] = (entry, [replace(chain, members=members)], delta)
    return made
