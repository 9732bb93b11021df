"""Linked chains, account limits, closing and balancing transfers: outcomes, all-or-nothing,
idempotency and determinism."""

import msgspec
import pytest

from quorapay.core.digest import replay
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Ledger, Status, validate
from quorapay.core.types import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    AccountId,
    CloseAccount,
    Commands,
    CreateAccount,
    Epoch,
    Linked,
    LogEntry,
    LogIndex,
    PayerTransfer,
    ReopenAccount,
)
from tests.core.harness import account, transfer
from tests.core.test_ledger import apply


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    apply(ledger, 1, account("bank", issuer=True), account("alice"), account("bob"),
          CreateAccount(id=AccountId("card"), currency="USD", allow_negative=True,
                        credits_must_not_exceed_debits=True))
    apply(ledger, 2, transfer("deposit", "bank", "alice", 1000))
    return ledger


def balances(ledger: Ledger) -> dict[str, int]:
    return {a.id: a.balance for a in ledger.accounts.values()}


def chain(*members) -> Linked:
    return Linked(commands=tuple(members))


def test_a_chain_applies_every_member_when_all_succeed(ledger: Ledger) -> None:
    results, delta = apply(ledger, 3, chain(transfer("c1", "alice", "bob", 300),
                                            transfer("c2", "bob", "alice", 100)))
    (result,) = results
    assert result.status is Status.OK and [m.status for m in result.members] == [Status.OK] * 2
    assert balances(ledger)["alice"] == 800 and balances(ledger)["bob"] == 200
    assert [r.transfer.id for r in delta.transfers] == ["c1", "c2"]


def test_a_chain_with_a_failing_member_moves_nothing_and_names_the_failure(
        ledger: Ledger) -> None:
    before = balances(ledger)
    results, delta = apply(ledger, 3, chain(transfer("c1", "alice", "bob", 300),
                                            transfer("c2", "bob", "alice", 301),
                                            transfer("c3", "alice", "bob", 1)))
    (result,) = results
    assert [m.status for m in result.members] == [
        Status.LINKED_EVENT_FAILED, Status.INSUFFICIENT_FUNDS, Status.LINKED_EVENT_FAILED]
    assert "c2" in result.members[0].detail and result.status is Status.INSUFFICIENT_FUNDS
    assert balances(ledger) == before and ledger.totals() == {"USD": 0}
    assert not delta.accounts  # no account row changed
    assert [(r.transfer.id, r.status, r.moved) for r in delta.transfers] == [
        ("c1", Status.LINKED_EVENT_FAILED, 0), ("c2", Status.INSUFFICIENT_FUNDS, 0),
        ("c3", Status.LINKED_EVENT_FAILED, 0)]


def test_a_chain_retried_is_answered_as_decided_and_applied_once(ledger: Ledger) -> None:
    links = chain(transfer("c1", "alice", "bob", 300), transfer("c2", "bob", "alice", 100))
    first, _ = apply(ledger, 3, links)
    again, delta = apply(ledger, 4, links)
    assert again == first and not delta.transfers and not delta.accounts
    failing = chain(transfer("f1", "alice", "bob", 5), transfer("f2", "alice", "nobody", 5))
    first, _ = apply(ledger, 5, failing)
    again, _ = apply(ledger, 6, failing)
    assert [m.status for m in again[0].members] == [m.status for m in first[0].members]


def test_a_chain_mixing_decided_and_new_ids_is_refused_and_records_nothing(
        ledger: Ledger) -> None:
    before = balances(ledger)
    results, delta = apply(ledger, 3, chain(transfer("new", "alice", "bob", 5),
                                            transfer("deposit", "bank", "alice", 1000)))
    assert [m.status for m in results[0].members] == [Status.LINKED_EVENT_FAILED,
                                                      Status.ID_CONFLICT]
    assert not delta.transfers and balances(ledger) == before
    assert ledger.transfer("new") is None  # still free


def test_a_chain_invalid_on_its_face_is_refused_whole() -> None:
    assert validate(chain(transfer("a", "x", "y", 1))) != ""  # one member is no chain
    assert "twice" in validate(chain(transfer("a", "x", "y", 1), transfer("a", "x", "y", 1)))
    assert validate(chain(transfer("a", "x", "y", 1), transfer("b", "x", "x", 1))) != ""
    ledger = Ledger()
    results, delta = apply(ledger, 1, chain(transfer("a", "x", "y", 1),
                                            transfer("b", "x", "x", 1)))
    assert [m.status for m in results[0].members] == [Status.LINKED_EVENT_FAILED,
                                                      Status.INVALID]
    assert not delta.transfers


def test_a_payer_chain_that_debits_an_issuer_fails_whole(ledger: Ledger) -> None:
    results, _ = apply(ledger, 3, chain(PayerTransfer(transfer=transfer("p1", "alice", "bob", 5)),
                                        PayerTransfer(transfer=transfer("p2", "bank", "bob", 5))))
    assert [m.status for m in results[0].members] == [Status.LINKED_EVENT_FAILED,
                                                      Status.FORBIDDEN]


def test_credits_must_not_exceed_debits_keeps_a_balance_at_or_below_zero(
        ledger: Ledger) -> None:
    results, _ = apply(ledger, 3, transfer("r1", "card", "alice", 50),
                       transfer("r2", "alice", "card", 51), transfer("r3", "alice", "card", 50))
    assert [r.status for r in results] == [Status.OK, Status.EXCEEDS_DEBITS, Status.OK]
    assert balances(ledger)["card"] == 0
    problem = validate(CreateAccount(id=AccountId("x"), currency="USD",
                                     credits_must_not_exceed_debits=True))
    assert "allow_negative" in problem


def test_a_balancing_transfer_moves_what_the_limit_allows(ledger: Ledger) -> None:
    sweep = transfer("s1", "alice", "bob", 5000, flags=BALANCING_DEBIT)
    results, delta = apply(ledger, 3, sweep)
    assert results[0].status is Status.OK and results[0].moved == 1000
    assert balances(ledger)["alice"] == 0 and balances(ledger)["bob"] == 1000
    assert delta.transfers[0].moved == 1000
    again, _ = apply(ledger, 4, sweep)
    assert again[0].moved == 1000 and again[0].index == 3
    empty, _ = apply(ledger, 5, transfer("s2", "alice", "bob", 10, flags=BALANCING_DEBIT))
    assert empty[0].status is Status.INSUFFICIENT_FUNDS and empty[0].moved == 0
    apply(ledger, 6, transfer("c1", "card", "bob", 30))
    refund, _ = apply(ledger, 7, transfer("s3", "bob", "card", 100, flags=BALANCING_CREDIT))
    assert refund[0].moved == 30 and balances(ledger)["card"] == 0
    plain, _ = apply(ledger, 8, transfer("s4", "bank", "bob", 7, flags=BALANCING_DEBIT))
    assert plain[0].moved == 7  # an issuer has no limit: the whole amount


def test_a_closed_account_takes_part_in_no_transfer_until_reopened(ledger: Ledger) -> None:
    results, delta = apply(ledger, 3, CloseAccount(id=AccountId("alice")),
                           transfer("t1", "alice", "bob", 5), transfer("t2", "bob", "alice", 5))
    assert [r.status for r in results] == [Status.OK, Status.ACCOUNT_CLOSED,
                                           Status.ACCOUNT_CLOSED]
    assert ledger.accounts["alice"].closed and delta.accounts["alice"].closed
    again, _ = apply(ledger, 4, CloseAccount(id=AccountId("alice")))
    assert again[0].status is Status.OK  # closing a closed account: nothing to do
    results, _ = apply(ledger, 5, ReopenAccount(id=AccountId("alice")),
                       transfer("t3", "alice", "bob", 5), CloseAccount(id=AccountId("nobody")))
    assert [r.status for r in results] == [Status.OK, Status.OK, Status.ACCOUNT_NOT_FOUND]
    assert balances(ledger)["alice"] == 995


def test_accounts_are_values_a_delta_keeps_as_they_were(ledger: Ledger) -> None:
    _, delta = apply(ledger, 3, transfer("t1", "alice", "bob", 5))
    apply(ledger, 4, transfer("t2", "alice", "bob", 5))
    assert delta.accounts["alice"].balance == 995 and ledger.accounts["alice"].balance == 990


def test_replaying_the_same_log_gives_the_same_state_and_digest() -> None:
    commands = [
        account("bank", issuer=True), account("a"), account("b"),
        transfer("d", "bank", "a", 100),
        chain(transfer("c1", "a", "b", 60), transfer("c2", "b", "a", 10)),
        chain(transfer("c3", "a", "b", 60), transfer("c4", "b", "a", 10)),
        transfer("s", "a", "b", 1000, flags=BALANCING_DEBIT),
        CloseAccount(id=AccountId("b")), transfer("x", "a", "b", 1),
        ReopenAccount(id=AccountId("b")),
    ]
    log = [LogEntry(index=LogIndex(i + 1), epoch=Epoch(1), ts=Timestamp(1000 + i, 0),
                    payload=Commands(commands=(c,))) for i, c in enumerate(commands)]
    one, two = replay(log), replay(log)
    assert one.digest() == two.digest() == one.recount_digest()
    assert msgspec.msgpack.encode(one.export()) == msgspec.msgpack.encode(two.export())
    assert one.totals() == {"USD": 0}
    assert Ledger.from_state(one.export()).digest() == one.digest()
