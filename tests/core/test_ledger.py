"""The payment state machine: outcomes, idempotency, conservation."""

import pytest

from quorapay.core.ledger import Delta, Ledger, Status, validate
from quorapay.core.types import (
    Commands,
    Epoch,
    EpochStart,
    LogEntry,
    LogIndex,
    NodeId,
    PayerTransfer,
)
from tests.core.harness import account, transfer


def apply(ledger: Ledger, index: int, *commands):
    delta = Delta()
    results = ledger.apply(LogEntry(index=LogIndex(index), epoch=Epoch(1),
                                    payload=Commands(commands=commands)), delta)
    return results, delta


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    apply(ledger, 1, account("bank", issuer=True), account("alice"), account("bob"))
    apply(ledger, 2, transfer("deposit", "bank", "alice", 1000))
    return ledger


def test_transfer_moves_money_and_conserves_it(ledger: Ledger) -> None:
    results, delta = apply(ledger, 3, transfer("t1", "alice", "bob", 300))
    assert [r.status for r in results] == [Status.OK]
    assert ledger.accounts["alice"].balance == 700
    assert ledger.accounts["bob"].balance == 300
    assert ledger.totals() == {"USD": 0}
    assert set(delta.accounts) == {"alice", "bob"}
    assert [r.transfer.id for r in delta.transfers] == ["t1"]


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (transfer("t1", "alice", "bob", 1001), Status.INSUFFICIENT_FUNDS),
        (transfer("t1", "alice", "nobody", 1), Status.ACCOUNT_NOT_FOUND),
        (transfer("t1", "alice", "bob", 0), Status.INVALID),
        (transfer("t1", "alice", "alice", 5), Status.INVALID),
        (transfer("t1", "alice", "bob", 2**60), Status.INVALID),
    ],
)
def test_definitive_failures_change_no_balance(ledger: Ledger, command, status) -> None:
    digest_before = {a.id: a.balance for a in ledger.accounts.values()}
    results, delta = apply(ledger, 3, command)
    assert results[0].status is status
    assert {a.id: a.balance for a in ledger.accounts.values()} == digest_before
    assert not delta.accounts


def test_currency_mismatch() -> None:
    ledger = Ledger()
    eur = account("eur")
    apply(ledger, 1, account("usd", issuer=True),
          type(eur)(id=eur.id, currency="EUR", allow_negative=False))
    results, _ = apply(ledger, 2, transfer("t1", "usd", "eur", 5))
    assert results[0].status is Status.CURRENCY_MISMATCH


def test_same_id_same_body_returns_the_original_outcome_and_applies_once(ledger: Ledger) -> None:
    first, _ = apply(ledger, 3, transfer("t1", "alice", "bob", 300))
    again, delta = apply(ledger, 9, transfer("t1", "alice", "bob", 300))
    assert again[0].status is Status.OK and again[0].index == first[0].index == 3
    assert ledger.accounts["bob"].balance == 300
    assert not delta.transfers and not delta.accounts


def test_same_id_different_body_is_an_id_conflict(ledger: Ledger) -> None:
    apply(ledger, 3, transfer("t1", "alice", "bob", 300))
    results, _ = apply(ledger, 4, transfer("t1", "alice", "bob", 301))
    assert results[0].status is Status.ID_CONFLICT
    assert ledger.accounts["bob"].balance == 300


def test_a_failed_transfer_keeps_its_outcome_when_retried(ledger: Ledger) -> None:
    apply(ledger, 3, transfer("t1", "alice", "bob", 5000))
    apply(ledger, 4, transfer("more", "bank", "alice", 9000))
    results, _ = apply(ledger, 5, transfer("t1", "alice", "bob", 5000))
    assert results[0].status is Status.INSUFFICIENT_FUNDS and results[0].index == 3


def test_account_creation_is_idempotent_and_conflicts_on_other_attributes(ledger: Ledger) -> None:
    assert apply(ledger, 3, account("alice"))[0][0].status is Status.OK
    assert apply(ledger, 4, account("alice", issuer=True))[0][0].status is Status.ID_CONFLICT


def test_epoch_start_and_barriers_change_nothing(ledger: Ledger) -> None:
    digest = ledger.digest()
    entry = LogEntry(index=LogIndex(3), epoch=Epoch(2), payload=EpochStart(leader=NodeId("n1")))
    assert ledger.apply(entry, Delta()) == []
    assert apply(ledger, 4)[0] == []
    assert ledger.digest() == digest


def test_digest_depends_on_state_only() -> None:
    a, b = Ledger(), Ledger()
    apply(a, 1, account("x"), account("y"))
    apply(b, 1, account("y"))  # same accounts, other order, other batching... but other index
    assert a.digest() != b.digest()


@pytest.mark.parametrize("bad_id", ["", "a" * 65, "has space", "ünïcode"])
def test_validate_rejects_bad_ids(bad_id: str) -> None:
    assert validate(transfer(bad_id, "a", "b", 1))
    assert validate(account(bad_id))


def test_a_payer_may_not_debit_an_issuer_and_the_id_keeps_that_outcome(ledger: Ledger) -> None:
    minted = PayerTransfer(transfer=transfer("mint", "bank", "bob", 500))
    results, delta = apply(ledger, 3, minted)
    assert results[0].status is Status.FORBIDDEN and results[0].id == "mint"
    assert ledger.accounts["bob"].balance == 0 and ledger.totals() == {"USD": 0}
    assert [r.status for r in delta.transfers] == [Status.FORBIDDEN]  # decided, like a refusal
    again, _ = apply(ledger, 4, transfer("mint", "bank", "bob", 500))  # by an operator, same id
    assert again[0].status is Status.FORBIDDEN and again[0].index == 3


def test_a_payer_transfer_between_ordinary_accounts_is_a_transfer(ledger: Ledger) -> None:
    results, _ = apply(ledger, 3, PayerTransfer(transfer=transfer("p1", "alice", "bob", 300)))
    assert results[0].status is Status.OK
    retried, _ = apply(ledger, 4, transfer("p1", "alice", "bob", 300))  # the same body
    assert retried[0].status is Status.OK and retried[0].index == 3
    assert ledger.accounts["bob"].balance == 300
    assert validate(PayerTransfer(transfer=transfer("p 2", "alice", "bob", 1)))  # checked too
