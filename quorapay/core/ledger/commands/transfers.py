"""Moving money: a transfer, a payer's transfer, a balancing transfer, a pending one and
its post or void (`pending`)."""

from __future__ import annotations

import msgspec

from quorapay.core.ledger.book import Book
from quorapay.core.ledger.commands import pending
from quorapay.core.ledger.model import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    CURRENCY_PATTERN,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    ID_PATTERN,
    MAX_AMOUNT,
    MAX_BALANCE,
    Account,
    At,
    Result,
    Status,
    TransferRecord,
)
from quorapay.core.types import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    PENDING,
    RESOLVES,
    TRANSFER_FLAGS,
    PayerTransfer,
    Transfer,
)


def validate(transfer: Transfer) -> str:
    if transfer.flags & RESOLVES:
        return pending.validate(transfer)
    for name, value in (("transfer id", transfer.id), ("debit", transfer.debit),
                        ("credit", transfer.credit)):
        if not ID_PATTERN.fullmatch(value):
            return f"{name} must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
    if transfer.debit == transfer.credit:
        return "debit and credit must be different accounts"
    if isinstance(transfer.amount, bool) or not 1 <= transfer.amount <= MAX_AMOUNT:
        return f"amount must be an integer number of minor units from 1 to {MAX_AMOUNT}"
    if not CURRENCY_PATTERN.fullmatch(transfer.currency):
        return "currency must be 1-12 upper-case letters or digits, starting with a letter"
    if transfer.flags & ~TRANSFER_FLAGS:
        return "unknown transfer flags"
    if transfer.pending_id:
        return "pending_id is for a post or void"
    if transfer.timeout_ms and not transfer.flags & PENDING:
        return "timeout_ms is for pending transfers"
    return ""


def validate_payer(command: PayerTransfer) -> str:
    return validate(command.transfer)


def apply_payer(command: PayerTransfer, book: Book, at: At) -> Result:
    """A payer's transfer: it may not debit an issuer account (that would create money)."""
    return decide(command.transfer, book, at, payer=True)


def decide(transfer: Transfer, book: Book, at: At, payer: bool = False) -> Result:
    """Decide a transfer once: record its outcome and, if it succeeds, move the money. A
    transfer id decided before is answered as it was then."""
    previous = book.decided(transfer.id)
    if previous is not None:
        return again(transfer, previous, book)
    if transfer.flags & RESOLVES:
        return pending.resolve(transfer, book, at, payer=payer)
    debit, credit = book.account(transfer.debit), book.account(transfer.credit)
    status, moved = _outcome(transfer, debit, credit, payer=payer)
    book.record(TransferRecord(transfer=transfer, status=status, index=at.index, ts=at.ts,
                               moved=moved))
    if status is Status.OK and transfer.flags & PENDING:
        pending.reserve(transfer, moved, book, at)
    elif status is Status.OK:
        assert debit is not None
        assert credit is not None
        book.put(msgspec.structs.replace(debit, balance=debit.balance - moved))
        book.put(msgspec.structs.replace(credit, balance=credit.balance + moved))
    return Result(kind="transfer", id=transfer.id, status=status, index=at.index, ts=at.ts,
                  moved=moved if transfer.flags else None)


def again(transfer: Transfer, previous: TransferRecord, book: Book) -> Result:
    """The answer to a transfer whose id was decided before."""
    if previous.transfer == transfer or (transfer.flags & RESOLVES and previous.transfer ==
                                         pending.filled(transfer,
                                                        book.decided(transfer.pending_id))):
        return Result(kind="transfer", id=transfer.id, status=previous.status,
                      index=previous.index, ts=previous.ts,
                      moved=previous.moved if transfer.flags else None)
    return Result(kind="transfer", id=transfer.id, status=Status.ID_CONFLICT,
                  index=previous.index, detail="transfer id used with a different body",
                  ts=previous.ts)


def _outcome(transfer: Transfer, debit: Account | None, credit: Account | None, *,
             payer: bool) -> tuple[Status, int]:
    """Whether the transfer can move money now, and how much (a balancing one: at most its
    amount, as much as the accounts' limits allow)."""
    if debit is None or credit is None:
        return Status.ACCOUNT_NOT_FOUND, 0
    if not debit.currency == credit.currency == transfer.currency:
        return Status.CURRENCY_MISMATCH, 0
    if debit.closed or credit.closed:
        return Status.ACCOUNT_CLOSED, 0
    if payer and debit.allow_negative:
        return Status.FORBIDDEN, 0
    amount: int = transfer.amount
    # what each limit leaves room for, pending amounts counted (None: no limit)
    debit_room = debit.balance - debit.debits_pending \
        if debit.flags & DEBITS_MUST_NOT_EXCEED_CREDITS else None
    credit_room = -credit.balance - credit.credits_pending \
        if credit.flags & CREDITS_MUST_NOT_EXCEED_DEBITS else None
    if transfer.flags & BALANCING_DEBIT and debit_room is not None:
        amount = min(amount, debit_room)
    if transfer.flags & BALANCING_CREDIT and credit_room is not None:
        amount = min(amount, credit_room)
    if debit_room is not None and (amount > debit_room or debit_room <= 0):
        return Status.INSUFFICIENT_FUNDS, 0
    if credit_room is not None and (amount > credit_room or credit_room <= 0):
        return Status.EXCEEDS_DEBITS, 0
    if debit.balance - amount < -MAX_BALANCE or credit.balance + amount > MAX_BALANCE:
        return Status.INVALID, 0  # would leave the representable range; the same everywhere
    return Status.OK, amount

