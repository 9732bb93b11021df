"""Two-phase transfers: reserve now (a pending transfer), post or void later, or expire.

A pending transfer that succeeds reserves its amount on both accounts (`debits_pending` on the
debit account, `credits_pending` on the credit one): the accounts' limits count it, balances do
not move. It is resolved exactly once, by whichever comes first:

- a transfer flagged POST_PENDING naming it (`pending_id`) posts all of it, or `amount` of it,
  and releases the rest;
- a transfer flagged VOID_PENDING releases all of it;
- with `timeout_ms`, the log's time: the first entry whose timestamp is at or past the pending
  transfer's entry's plus `timeout_ms` expires it before its own commands apply. Every replica
  reads the same timestamps from the same log, so each expires the same transfers at the same
  index; no node's clock decides.

Each resolution is recorded as a decided transfer of its own: `<pending id>#resolution`
(`#` is in no client id), status posted, voided or expired, moved the amount posted. That record
is how a later post or void learns the reservation is gone, and why.
"""

from __future__ import annotations

import msgspec

from quorapay.core.ledger.book import Book
from quorapay.core.ledger.model import (
    ID_PATTERN,
    MAX_AMOUNT,
    At,
    Expiring,
    Result,
    Status,
    TransferRecord,
)
from quorapay.core.types import (
    PENDING,
    POST_PENDING,
    RESOLUTION,
    VOID_PENDING,
    AccountId,
    Cents,
    Transfer,
    TransferId,
)

_ALREADY = {Status.POSTED: Status.PENDING_TRANSFER_ALREADY_POSTED,
            Status.VOIDED: Status.PENDING_TRANSFER_ALREADY_VOIDED,
            Status.EXPIRED: Status.PENDING_TRANSFER_EXPIRED}


def resolution_id(pending_id: str) -> TransferId:
    """The id of the record of how pending transfer `pending_id` was resolved."""
    return TransferId(f"{pending_id}#resolution")


def validate(transfer: Transfer) -> str:
    """A post or void: its pending id, and what it may leave out (accounts, currency)."""
    if transfer.flags & POST_PENDING and transfer.flags & VOID_PENDING:
        return "a transfer posts or voids, not both"
    if transfer.flags & ~(POST_PENDING | VOID_PENDING):
        return "a post or void takes no other flag"
    if not ID_PATTERN.fullmatch(transfer.pending_id):
        return "pending_id must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
    if transfer.pending_id == transfer.id:
        return "a transfer cannot post or void itself"
    if transfer.timeout_ms:
        return "timeout_ms is for pending transfers"
    if not 0 <= transfer.amount <= MAX_AMOUNT or isinstance(transfer.amount, bool):
        return f"amount must be 0 (all of it) or 1 to {MAX_AMOUNT} minor units"
    if transfer.flags & VOID_PENDING and transfer.amount:
        return "a void releases all of the pending amount: leave amount out"
    for name, value in (("debit", transfer.debit), ("credit", transfer.credit)):
        if value and not ID_PATTERN.fullmatch(value):
            return f"{name} must be empty or 1-64 characters of A-Z a-z 0-9 _ . : @ -"
    return ""


def reserve(transfer: Transfer, moved: int, book: Book, at: At) -> None:
    """A pending transfer succeeded: hold `moved` on both accounts, and wait for its timeout."""
    debit, credit = book.account(transfer.debit), book.account(transfer.credit)
    assert debit is not None
    assert credit is not None
    book.put(msgspec.structs.replace(debit, debits_pending=debit.debits_pending + moved))
    book.put(msgspec.structs.replace(credit, credits_pending=credit.credits_pending + moved))
    if transfer.timeout_ms:
        book.schedule(Expiring(transfer.id, at.ts.wall_ms + transfer.timeout_ms, transfer.debit,
                               transfer.credit, moved, transfer.currency))


def resolve(transfer: Transfer, book: Book, at: At, *, payer: bool) -> Result:
    """Post or void a pending transfer, once. A payer may not post one that debits an issuer
    (an operator's reservation of new money)."""
    pending = book.decided(transfer.pending_id)
    status, body = _check(transfer, pending, book)
    if status is Status.OK and payer and pending is not None and transfer.flags & POST_PENDING:
        debit = book.account(pending.transfer.debit)
        if debit is not None and debit.allow_negative:
            status = Status.FORBIDDEN
    if status is not Status.OK or pending is None:
        book.record(TransferRecord(transfer=body, status=status, index=at.index, ts=at.ts))
        return Result(kind="transfer", id=transfer.id, status=status, index=at.index, ts=at.ts,
                      moved=0)
    reserved = pending.moved
    posted = (transfer.amount or reserved) if transfer.flags & POST_PENDING else 0
    _release(pending.transfer.debit, pending.transfer.credit, reserved, posted, book)
    book.unschedule(pending.transfer.id)
    book.record(TransferRecord(transfer=body, status=Status.OK, index=at.index, ts=at.ts,
                               moved=posted))
    p = pending.transfer
    book.record(_resolution(p.id, p.debit, p.credit, reserved, p.currency,
                            Status.POSTED if posted else Status.VOIDED, posted, at))
    return Result(kind="transfer", id=transfer.id, status=Status.OK, index=at.index, ts=at.ts,
                  moved=posted)


def filled(transfer: Transfer, pending: TransferRecord | None) -> Transfer:
    """A post or void as recorded: with its pending transfer's accounts and currency."""
    if pending is None:
        return transfer
    p = pending.transfer
    return msgspec.structs.replace(transfer, debit=p.debit, credit=p.credit, currency=p.currency)


def expire(due: Expiring, book: Book, at: At) -> None:
    """The log's time passed a pending transfer's timeout: release its reservation."""
    _release(due.debit, due.credit, due.amount, 0, book)
    book.unschedule(due.id)
    book.record(_resolution(due.id, due.debit, due.credit, due.amount, due.currency,
                            Status.EXPIRED, 0, at))


def _check(transfer: Transfer, pending: TransferRecord | None, book: Book
           ) -> tuple[Status, Transfer]:
    if pending is None:
        return Status.PENDING_TRANSFER_NOT_FOUND, transfer
    p = pending.transfer
    if not p.flags & PENDING or pending.status is not Status.OK:
        return Status.PENDING_TRANSFER_NOT_PENDING, transfer
    if (transfer.debit or p.debit, transfer.credit or p.credit) != (p.debit, p.credit) or (
            transfer.currency or p.currency) != p.currency:
        return Status.PENDING_TRANSFER_MISMATCH, transfer
    done = book.decided(resolution_id(p.id))
    if done is not None:
        return _ALREADY[done.status], filled(transfer, pending)
    if transfer.amount > pending.moved:
        return Status.EXCEEDS_PENDING_TRANSFER_AMOUNT, filled(transfer, pending)
    return Status.OK, filled(transfer, pending)


def _release(debit_id: AccountId, credit_id: AccountId, reserved: int, posted: int,
             book: Book) -> None:
    """Take `reserved` off both accounts' pending amounts and post `posted` of it."""
    debit, credit = book.account(debit_id), book.account(credit_id)
    assert debit is not None
    assert credit is not None
    book.put(msgspec.structs.replace(debit, debits_pending=debit.debits_pending - reserved,
                                     balance=debit.balance - posted))
    book.put(msgspec.structs.replace(credit, credits_pending=credit.credits_pending - reserved,
                                     balance=credit.balance + posted))


def _resolution(pending_id: TransferId, debit: AccountId, credit: AccountId, reserved: int,
                currency: str, status: Status, posted: int, at: At) -> TransferRecord:
    """The record of a pending transfer's resolution: `amount` what it had reserved."""
    return TransferRecord(
        transfer=Transfer(id=resolution_id(pending_id), debit=debit, credit=credit,
                          amount=Cents(reserved), currency=currency, flags=RESOLUTION,
                          pending_id=pending_id),
        status=status, index=at.index, ts=at.ts, moved=posted)
