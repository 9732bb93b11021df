"""Opening, closing and reopening accounts."""

from __future__ import annotations

import msgspec

from quorapay.core.ledger.book import Book
from quorapay.core.ledger.model import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    CURRENCY_PATTERN,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    ID_PATTERN,
    At,
    Result,
    Status,
    new_account,
)
from quorapay.core.types import AccountId, CloseAccount, CreateAccount, ReopenAccount

BAD_ID = "account id must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
BAD_CURRENCY = "currency must be 1-12 upper-case letters or digits, starting with a letter"


def flags_of(command: CreateAccount) -> int:
    """The limits an account opened by `command` keeps (`Account.flags`)."""
    return (0 if command.allow_negative else DEBITS_MUST_NOT_EXCEED_CREDITS) | (
        CREDITS_MUST_NOT_EXCEED_DEBITS if command.credits_must_not_exceed_debits else 0)


def validate_create(command: CreateAccount) -> str:
    if not ID_PATTERN.fullmatch(command.id):
        return BAD_ID
    if not CURRENCY_PATTERN.fullmatch(command.currency):
        return BAD_CURRENCY
    if flags_of(command) == DEBITS_MUST_NOT_EXCEED_CREDITS | CREDITS_MUST_NOT_EXCEED_DEBITS:
        return ("credits_must_not_exceed_debits needs allow_negative: with both limits an "
                "account could never move money")
    return ""


def create(command: CreateAccount, book: Book, at: At) -> Result:
    """Open an account; opening it again with the same attributes is answered as the first
    time (its creating entry's index)."""
    flags = flags_of(command)
    existing = book.account(command.id)
    if existing is not None:
        same = (existing.currency, existing.flags) == (command.currency, flags)
        return Result(kind="account", id=command.id,
                      status=Status.OK if same else Status.ID_CONFLICT, index=existing.index,
                      detail="" if same else "account exists with different attributes")
    book.put(new_account(command.id, command.currency, flags, at.index))
    return Result(kind="account", id=command.id, status=Status.OK, index=at.index)


def validate_named(command: CloseAccount | ReopenAccount) -> str:
    return "" if ID_PATTERN.fullmatch(command.id) else BAD_ID


def close(command: CloseAccount, book: Book, at: At) -> Result:
    return _set_closed(command.id, True, book, at)


def reopen(command: ReopenAccount, book: Book, at: At) -> Result:
    return _set_closed(command.id, False, book, at)


def _set_closed(account_id: AccountId, closed: bool, book: Book, at: At) -> Result:
    account = book.account(account_id)
    if account is None:
        return Result(kind="account", id=account_id, status=Status.ACCOUNT_NOT_FOUND,
                      index=at.index)
    if account.closed != closed:
        book.put(msgspec.structs.replace(account, closed=closed))
    return Result(kind="account", id=account_id, status=Status.OK, index=at.index)
