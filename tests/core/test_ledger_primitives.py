"""Linked chains, account limits, closing and balancing transfers: outcomes, all-or-nothing,
idempotency and determinism."""

import msgspec
import pytest

from quorapay.core.digest import replay
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Delta, Ledger, Status, validate
from quorapay.core.types import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    AccountId,
    Cents,
    CloseAccount,
    Commands,
    CreateAccount,
    Epoch,
    Linked,
    LogEntry,
    LogIndex,
    PayerTransfer,
    ReopenAccount,
    Transfer,
    TransferId,
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


# ------------------------------------------------------------------ two-phase transfers

def at(ledger: Ledger, index: int, wall_ms: int, *commands):
    """Apply commands in an entry stamped `wall_ms` (the log's time)."""
    delta = Delta()
    results = ledger.apply(LogEntry(index=LogIndex(index), epoch=Epoch(1),
                                    ts=Timestamp(wall_ms, 0), payload=Commands(
                                        commands=commands)), delta)
    return results, delta


def post(tid: str, pending_id: str, amount: int = 0) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(""), credit=AccountId(""),
                    amount=Cents(amount), currency="", flags=POST_PENDING,
                    pending_id=TransferId(pending_id))


def void(tid: str, pending_id: str) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(""), credit=AccountId(""),
                    amount=Cents(0), currency="", flags=VOID_PENDING,
                    pending_id=TransferId(pending_id))


def reserve(tid: str, debit: str, credit: str, amount: int, timeout_ms: int = 0) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(debit), credit=AccountId(credit),
                    amount=Cents(amount), currency="USD", flags=PENDING, timeout_ms=timeout_ms)


def pending_of(ledger: Ledger, account: str) -> tuple[int, int, int]:
    a = ledger.accounts[AccountId(account)]
    return a.balance, a.debits_pending, a.credits_pending


def test_a_pending_transfer_reserves_and_a_post_moves_part_and_releases_the_rest(
        ledger: Ledger) -> None:
    results, _ = at(ledger, 3, 10, reserve("r1", "alice", "bob", 600))
    assert results[0].status is Status.OK and results[0].moved == 600
    assert pending_of(ledger, "alice") == (1000, 600, 0)
    assert pending_of(ledger, "bob") == (0, 0, 600)
    refused, _ = at(ledger, 4, 11, transfer("t1", "alice", "bob", 401))
    assert refused[0].status is Status.INSUFFICIENT_FUNDS  # the reservation counts
    results, delta = at(ledger, 5, 12, post("p1", "r1", 250))
    assert results[0].status is Status.OK and results[0].moved == 250
    assert pending_of(ledger, "alice") == (750, 0, 0) and pending_of(ledger, "bob") == (250, 0, 0)
    assert [(r.transfer.id, r.status, r.moved) for r in delta.transfers] == [
        ("p1", Status.OK, 250), ("r1#resolution", Status.POSTED, 250)]
    assert delta.transfers[0].transfer.debit == "alice"  # recorded with the pending's accounts
    assert ledger.totals() == {"USD": 0}


def test_a_pending_transfer_is_resolved_exactly_once(ledger: Ledger) -> None:
    at(ledger, 3, 10, reserve("r1", "alice", "bob", 600), reserve("r2", "alice", "bob", 100))
    results, _ = at(ledger, 4, 11, void("v1", "r1"), post("p1", "r1"), void("v2", "r1"),
                    post("p2", "r2", 101), post("p3", "nothing"), post("p4", "deposit"))
    assert [r.status for r in results] == [
        Status.OK, Status.PENDING_TRANSFER_ALREADY_VOIDED, Status.PENDING_TRANSFER_ALREADY_VOIDED,
        Status.EXCEEDS_PENDING_TRANSFER_AMOUNT, Status.PENDING_TRANSFER_NOT_FOUND,
        Status.PENDING_TRANSFER_NOT_PENDING]
    assert pending_of(ledger, "alice") == (1000, 100, 0)
    results, _ = at(ledger, 5, 12, post("p5", "r2"), post("p6", "r2"))
    assert [r.status for r in results] == [Status.OK, Status.PENDING_TRANSFER_ALREADY_POSTED]
    again, delta = at(ledger, 6, 13, post("p5", "r2"))  # a retry: the original outcome
    assert again[0].status is Status.OK and again[0].index == 5 and not delta.transfers
    assert pending_of(ledger, "alice") == (900, 0, 0)


def test_a_pending_transfer_expires_by_the_logs_time_not_a_clock(ledger: Ledger) -> None:
    at(ledger, 3, 1_000, reserve("r1", "alice", "bob", 600, timeout_ms=500))
    assert ledger.next_expiry() == 1_500
    _, delta = at(ledger, 4, 1_499)  # an empty entry before the time: nothing expires
    assert not delta.transfers and pending_of(ledger, "alice") == (1000, 600, 0)
    results, delta = at(ledger, 5, 1_500, post("p1", "r1"))
    assert results[0].status is Status.PENDING_TRANSFER_EXPIRED  # expired before it applied
    assert [(r.transfer.id, r.status) for r in delta.transfers] == [
        ("r1#resolution", Status.EXPIRED), ("p1", Status.PENDING_TRANSFER_EXPIRED)]
    assert pending_of(ledger, "alice") == (1000, 0, 0) and ledger.next_expiry() is None
    _, delta = at(ledger, 6, 9_000)
    assert not delta.transfers  # released exactly once


def test_a_pending_transfer_posted_in_time_never_expires(ledger: Ledger) -> None:
    at(ledger, 3, 1_000, reserve("r1", "alice", "bob", 600, timeout_ms=500))
    at(ledger, 4, 1_200, post("p1", "r1"))
    _, delta = at(ledger, 5, 2_000)
    assert not delta.transfers and pending_of(ledger, "alice") == (400, 0, 0)
    assert ledger.next_expiry() is None


def test_a_post_naming_other_accounts_or_a_payer_posting_new_money_is_refused(
        ledger: Ledger) -> None:
    at(ledger, 3, 10, reserve("r1", "alice", "bob", 5), reserve("m1", "bank", "bob", 5))
    wrong = msgspec.structs.replace(post("p1", "r1"), debit=AccountId("bank"))
    results, _ = at(ledger, 4, 11, wrong, PayerTransfer(transfer=post("p2", "m1")),
                    PayerTransfer(transfer=post("p3", "r1")))
    assert [r.status for r in results] == [Status.PENDING_TRANSFER_MISMATCH, Status.FORBIDDEN,
                                           Status.OK]


def test_a_chain_with_a_pending_member_reserves_nothing_if_it_fails(ledger: Ledger) -> None:
    results, _ = at(ledger, 3, 10, chain(reserve("r1", "alice", "bob", 600, timeout_ms=50),
                                         transfer("t1", "alice", "bob", 500)))
    assert [m.status for m in results[0].members] == [Status.LINKED_EVENT_FAILED,
                                                      Status.INSUFFICIENT_FUNDS]
    assert pending_of(ledger, "alice") == (1000, 0, 0) and ledger.next_expiry() is None


def test_a_snapshot_carries_the_transfers_waiting_to_expire(ledger: Ledger) -> None:
    at(ledger, 3, 1_000, reserve("r1", "alice", "bob", 600, timeout_ms=500))
    copied = Ledger.from_state(ledger.export())
    assert copied.digest() == ledger.digest() and copied.next_expiry() == 1_500
    for each in (ledger, copied):
        at(each, 4, 2_000)
    assert copied.digest() == ledger.digest()
    assert pending_of(copied, "alice") == (1000, 0, 0)


def test_post_and_void_are_checked_on_their_face() -> None:
    assert "both" in validate(msgspec.structs.replace(post("p", "r"),
                                                      flags=POST_PENDING | VOID_PENDING))
    assert "pending_id" in validate(post("p", ""))
    assert "itself" in validate(post("p", "p"))
    assert "amount" in validate(msgspec.structs.replace(void("v", "r"), amount=Cents(5)))
    assert "timeout_ms" in validate(msgspec.structs.replace(transfer("t", "a", "b", 1),
                                                            timeout_ms=5))
    assert validate(reserve("r", "a", "b", 1, timeout_ms=5)) == ""
