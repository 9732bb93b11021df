"""The ledger's data: accounts, decided transfers, results, and the rows a snapshot carries.

An account is an immutable value: applying a transfer puts a new version of its two accounts,
so a chain applied against a working set (`quorapay.core.ledger.book`) can be dropped whole, and
rows handed to a write or a snapshot never change under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import msgspec

from quorapay.core.bounds import MAX_MONEY, Counter, Money
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.types import (
    AccountId,
    AccountIdField,
    CentsField,
    CurrencyField,
    IndexField,
    LogIndex,
    Transfer,
    TransferId,
    TransferIdField,
)

MAX_AMOUNT = 2**53 - 1  # exact in every JSON client
MAX_BALANCE = 2**62  # far inside SQLite's signed 64-bit INTEGER
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
CURRENCY_PATTERN = re.compile(r"[A-Z][A-Z0-9]{0,11}")

# Account.flags: the limits an account's balance keeps (pending amounts counted against them)
DEBITS_MUST_NOT_EXCEED_CREDITS = 1  # the balance stays >= 0: every account but an issuer
CREDITS_MUST_NOT_EXCEED_DEBITS = 2  # the balance stays <= 0
ACCOUNT_FLAGS = DEBITS_MUST_NOT_EXCEED_CREDITS | CREDITS_MUST_NOT_EXCEED_DEBITS

AccountFlags = Annotated[int, msgspec.Meta(ge=0, le=ACCOUNT_FLAGS)]
TransferFlagsField = Annotated[int, msgspec.Meta(ge=0, le=2**16)]
Pending = Annotated[int, msgspec.Meta(ge=0, le=MAX_MONEY)]


class Status(StrEnum):
    """The outcome of one command. Every status except OK is a definitive failure."""

    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the debit account's debits would exceed credits
    EXCEEDS_DEBITS = "exceeds_debits"  # the credit account's credits would exceed its debits
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_CLOSED = "account_closed"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID = "invalid"
    ID_CONFLICT = "id_conflict"
    FORBIDDEN = "forbidden"  # a payer's transfer debiting an issuer account
    LINKED_EVENT_FAILED = "linked_event_failed"  # another member of its chain failed
    # posting or voiding a pending transfer
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"  # not a reservation
    PENDING_TRANSFER_MISMATCH = "pending_transfer_mismatch"  # other accounts or currency
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    # the record of a pending transfer's resolution (never a command's outcome)
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class Account(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An account as of some entry: its limits, its balance (credits minus debits posted), the
    amounts reserved on it by pending transfers, and the entry that created it. Also its row
    in a snapshot (checked on decode, like every field a peer sends)."""

    id: AccountIdField
    currency: CurrencyField
    flags: AccountFlags
    balance: Money
    debits_pending: Pending
    credits_pending: Pending
    closed: bool
    index: IndexField

    @property
    def allow_negative(self) -> bool:
        """An issuer: its debits may exceed its credits."""
        return not self.flags & DEBITS_MUST_NOT_EXCEED_CREDITS


AccountRow = Account


def new_account(account_id: AccountId, currency: str, flags: int, index: LogIndex) -> Account:
    return Account(account_id, currency, flags, 0, 0, 0, False, index)


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A decided transfer: its body, its outcome, the entry that decided it (its index and
    timestamp) and the amount it moved (its amount, or less for a balancing one; 0 if it
    failed). Not tracked by Python's cycle collector (it can hold no cycle): a ledger of
    millions would otherwise make every full collection scan them all, stalling the node."""

    transfer: Transfer
    status: Status
    index: LogIndex
    ts: Timestamp = ZERO
    moved: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What a client is told about one command (a chain: about each member)."""

    kind: str  # "transfer" | "account" | "chain"
    id: str
    status: Status
    index: LogIndex
    detail: str = ""
    ts: Timestamp | None = None  # transfers: the timestamp of the entry that decided it
    moved: int | None = None  # balancing transfers: the amount moved
    members: tuple[Result, ...] = ()  # a chain: its members' results, in order


class TransferRow(msgspec.Struct, frozen=True, array_like=True):
    id: TransferIdField
    debit: AccountIdField
    credit: AccountIdField
    amount: CentsField
    currency: CurrencyField
    status: Status
    index: IndexField
    wall_ms: Counter = 0  # the deciding entry's timestamp
    logical: Counter = 0
    flags: TransferFlagsField = 0
    moved: Money = 0
    pending_id: TransferIdField = TransferId("")
    timeout_ms: Counter = 0


class Expiring(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A pending transfer that expires: when the log's time reaches `expires_ms`, unless it is
    posted or voided first, its reservation of `amount` on both accounts is released."""

    id: TransferIdField
    expires_ms: Counter
    debit: AccountIdField
    credit: AccountIdField
    amount: Pending
    currency: CurrencyField


class LedgerState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole ledger as data: what a snapshot carries. Ids are unique (checked on decode:
    a snapshot is stored as rows keyed by id)."""

    accounts: tuple[AccountRow, ...]
    transfers: tuple[TransferRow, ...]
    expiring: tuple[Expiring, ...] = ()  # the pending transfers that expire, not yet resolved

    def __post_init__(self) -> None:
        if len({a.id for a in self.accounts}) != len(self.accounts) or len(
                {t.id for t in self.transfers}) != len(self.transfers):
            raise ValueError("a ledger state lists an account or transfer id twice")


@dataclass(slots=True, kw_only=True)
class Delta:
    """Rows changed by applying entries; written with the applied index in one transaction.
    Accounts are immutable: what a delta holds is what it writes, whatever is applied after."""

    accounts: dict[AccountId, Account] = field(default_factory=dict)
    transfers: list[TransferRecord] = field(default_factory=list)
    # pending transfers that began (their Expiring) or stopped (None) waiting to expire
    expiring: dict[TransferId, Expiring | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedSums:
    """The decided transfers a snapshot staged in a store: their count, encoded size (as
    `record_size`) and digest (`record_hash` summed modulo 2**256)."""

    count: int
    size: int
    digest: int


@dataclass(frozen=True, slots=True)
class At:
    """The entry being applied: its index and the timestamp the leader stamped it with."""

    index: LogIndex
    ts: Timestamp
