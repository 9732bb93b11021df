"""The deterministic payment state machine: double entry, integer minor units.

Owns accounts and the record of every decided transfer. Applying the same log in the same order
always produces the same results and the same state, on every replica. Pure: it never persists;
`apply` returns the rows that changed so the driver can write them in the same transaction that
advances the applied index.

Invariants: the balances of each currency sum to zero (money is created only by moving it out of
an issuer account that may go negative); a transfer id is decided once, and asking again returns
the original outcome.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import assert_never

import msgspec

from quorapay.core.bounds import Counter, Money
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.types import (
    AccountId,
    AccountIdField,
    CentsField,
    Command,
    Commands,
    CreateAccount,
    CurrencyField,
    IndexField,
    LogEntry,
    LogIndex,
    PayerTransfer,
    Transfer,
    TransferId,
    TransferIdField,
)

MAX_AMOUNT = 2**53 - 1  # exact in every JSON client
MAX_BALANCE = 2**62  # far inside SQLite's signed 64-bit INTEGER
_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{0,11}")


class Status(StrEnum):
    """The outcome of one command. Every status except OK is a definitive failure."""

    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID = "invalid"
    ID_CONFLICT = "id_conflict"
    FORBIDDEN = "forbidden"  # a payer's transfer debiting an issuer account


@dataclass(slots=True, kw_only=True)
class Account:
    id: AccountId
    currency: str
    allow_negative: bool
    balance: int
    index: LogIndex  # the entry that created it


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A decided transfer: its body, its outcome and the entry that decided it (its index and
    timestamp). Not tracked by Python's cycle collector (it can hold no cycle): a ledger of
    millions would otherwise make every full collection scan them all, stalling the node."""

    transfer: Transfer
    status: Status
    index: LogIndex
    ts: Timestamp = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What a client is told about one command."""

    kind: str  # "transfer" | "account"
    id: str
    status: Status
    index: LogIndex
    detail: str = ""
    ts: Timestamp | None = None  # transfers: the timestamp of the entry that decided it


class AccountRow(msgspec.Struct, frozen=True, array_like=True):
    id: AccountIdField
    currency: CurrencyField
    allow_negative: bool
    balance: Money
    index: IndexField


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


class LedgerState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole ledger as data: what a snapshot carries. Ids are unique (checked on decode:
    a snapshot is stored as rows keyed by id)."""

    accounts: tuple[AccountRow, ...]
    transfers: tuple[TransferRow, ...]

    def __post_init__(self) -> None:
        if len({a.id for a in self.accounts}) != len(self.accounts) or len(
                {t.id for t in self.transfers}) != len(self.transfers):
            raise ValueError("a ledger state lists an account or transfer id twice")


@dataclass(slots=True, kw_only=True)
class Delta:
    """Rows changed by applying entries; written with the applied index in one transaction."""

    accounts: dict[AccountId, Account] = field(default_factory=dict)
    transfers: list[TransferRecord] = field(default_factory=list)

    def detach(self) -> None:
        """Copy the account rows, so that entries applied after these (while this delta waits
        for its write) do not change what it writes."""
        self.accounts = {key: replace(account) for key, account in self.accounts.items()}


def validate(command: Command) -> str:
    """Return why a command is invalid on its face, or "" if it is well formed."""
    match command:
        case CreateAccount(id=account_id, currency=currency):
            if not _ID.fullmatch(account_id):
                return "account id must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
            if not _CURRENCY.fullmatch(currency):
                return "currency must be 1-12 upper-case letters or digits, starting with a letter"
        case PayerTransfer(transfer=transfer):
            return validate(transfer)
        case Transfer(id=transfer_id, debit=debit, credit=credit, amount=amount, currency=cur):
            for name, value in (("transfer id", transfer_id), ("debit", debit), ("credit", credit)):
                if not _ID.fullmatch(value):
                    return f"{name} must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
            if debit == credit:
                return "debit and credit must be different accounts"
            if isinstance(amount, bool) or not 1 <= amount <= MAX_AMOUNT:
                return f"amount must be an integer number of minor units from 1 to {MAX_AMOUNT}"
            if not _CURRENCY.fullmatch(cur):
                return "currency must be 1-12 upper-case letters or digits, starting with a letter"
    return ""


class Ledger:
    """Accounts and decided transfers, changed only by `apply`."""

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        transfers: Iterable[TransferRecord] = (),
    ) -> None:
        self._accounts = {a.id: a for a in accounts}
        self._transfers = {r.transfer.id: r for r in transfers}

    @classmethod
    def from_state(cls, state: LedgerState) -> Ledger:
        return cls([Account(id=a.id, currency=a.currency, allow_negative=a.allow_negative,
                            balance=a.balance, index=a.index) for a in state.accounts],
                   [TransferRecord(transfer=Transfer(id=t.id, debit=t.debit, credit=t.credit,
                                                     amount=t.amount, currency=t.currency),
                                   status=t.status, index=t.index,
                                   ts=Timestamp(t.wall_ms, t.logical))
                    for t in state.transfers])

    def export(self) -> LedgerState:
        return LedgerState(
            accounts=tuple(AccountRow(a.id, a.currency, a.allow_negative, a.balance, a.index)
                           for a in sorted(self._accounts.values(), key=lambda a: a.id)),
            transfers=tuple(TransferRow(r.transfer.id, r.transfer.debit, r.transfer.credit,
                                        r.transfer.amount, r.transfer.currency, r.status,
                                        r.index, r.ts.wall_ms, r.ts.logical)
                            for r in sorted(self._transfers.values(),
                                            key=lambda r: r.transfer.id)))

    def copy(self) -> Ledger:
        """An independent copy (its accounts are new objects; transfer records are immutable)."""
        copied = Ledger()
        copied._accounts = {i: Account(id=a.id, currency=a.currency,
                                       allow_negative=a.allow_negative, balance=a.balance,
                                       index=a.index) for i, a in self._accounts.items()}
        copied._transfers = dict(self._transfers)
        return copied

    def replace(self, state: LedgerState) -> None:
        """Become exactly `state` (a snapshot installed)."""
        other = Ledger.from_state(state)
        self._accounts, self._transfers = other._accounts, other._transfers

    @property
    def accounts(self) -> Mapping[AccountId, Account]:
        return self._accounts

    @property
    def transfers(self) -> Mapping[TransferId, TransferRecord]:
        return self._transfers

    def apply(self, entry: LogEntry, delta: Delta) -> list[Result]:
        """Apply one committed entry, recording changed rows in `delta`; a result per command."""
        if not isinstance(entry.payload, Commands):
            return []
        return [self._apply_command(c, entry.index, entry.ts, delta)
                for c in entry.payload.commands]

    def _apply_command(self, command: Command, index: LogIndex, ts: Timestamp, delta: Delta,
                       ) -> Result:
        problem = validate(command)
        if problem:
            kind = "account" if isinstance(command, CreateAccount) else "transfer"
            return Result(kind=kind, id=command.id, status=Status.INVALID, index=index,
                          detail=problem, ts=ts if kind == "transfer" else None)
        match command:
            case CreateAccount():
                return self._create_account(command, index, delta)
            case Transfer():
                return self._transfer(command, index, ts, delta)
            case PayerTransfer(transfer=transfer):
                return self._transfer(transfer, index, ts, delta, payer=True)
            case _:
                assert_never(command)

    def _create_account(self, command: CreateAccount, index: LogIndex, delta: Delta) -> Result:
        existing = self._accounts.get(command.id)
        if existing is not None:
            same = (existing.currency, existing.allow_negative) == (
                command.currency, command.allow_negative)
            return Result(kind="account", id=command.id,
                          status=Status.OK if same else Status.ID_CONFLICT, index=existing.index,
                          detail="" if same else "account exists with different attributes")
        account = Account(id=command.id, currency=command.currency,
                          allow_negative=command.allow_negative, balance=0, index=index)
        self._accounts[command.id] = account
        delta.accounts[command.id] = account
        return Result(kind="account", id=command.id, status=Status.OK, index=index)

    def _transfer(self, transfer: Transfer, index: LogIndex, ts: Timestamp, delta: Delta, *,
                  payer: bool = False) -> Result:
        previous = self._transfers.get(transfer.id)
        if previous is not None:
            if previous.transfer == transfer:
                return Result(kind="transfer", id=transfer.id, status=previous.status,
                              index=previous.index, ts=previous.ts)
            return Result(kind="transfer", id=transfer.id, status=Status.ID_CONFLICT,
                          index=previous.index, detail="transfer id used with a different body",
                          ts=previous.ts)
        status = self._decide(transfer, payer=payer)
        record = TransferRecord(transfer=transfer, status=status, index=index, ts=ts)
        self._transfers[transfer.id] = record
        delta.transfers.append(record)
        if status is Status.OK:
            debit, credit = self._accounts[transfer.debit], self._accounts[transfer.credit]
            debit.balance -= transfer.amount
            credit.balance += transfer.amount
            delta.accounts[debit.id] = debit
            delta.accounts[credit.id] = credit
        return Result(kind="transfer", id=transfer.id, status=status, index=index, ts=ts)

    def _decide(self, transfer: Transfer, *, payer: bool = False) -> Status:
        debit = self._accounts.get(transfer.debit)
        credit = self._accounts.get(transfer.credit)
        if debit is None or credit is None:
            return Status.ACCOUNT_NOT_FOUND
        if not debit.currency == credit.currency == transfer.currency:
            return Status.CURRENCY_MISMATCH
        if payer and debit.allow_negative:
            return Status.FORBIDDEN
        if debit.balance - transfer.amount < 0 and not debit.allow_negative:
            return Status.INSUFFICIENT_FUNDS
        if debit.balance - transfer.amount < -MAX_BALANCE or (
                credit.balance + transfer.amount > MAX_BALANCE):
            return Status.INVALID  # would leave the representable range; deterministic everywhere
        return Status.OK

    def totals(self) -> dict[str, int]:
        """The sum of balances per currency: zero for every currency while money is conserved."""
        sums: dict[str, int] = {}
        for account in self._accounts.values():
            sums[account.currency] = sums.get(account.currency, 0) + account.balance
        return sums

    def digest(self) -> str:
        """A hash of the whole state, equal on two replicas exactly when their states are equal."""
        h = hashlib.sha256()
        for a in sorted(self._accounts.values(), key=lambda a: a.id):
            h.update(f"A|{a.id}|{a.currency}|{int(a.allow_negative)}|{a.balance}|{a.index}\n"
                     .encode())
        for r in sorted(self._transfers.values(), key=lambda r: r.transfer.id):
            t = r.transfer
            h.update(f"T|{t.id}|{t.debit}|{t.credit}|{t.amount}|{t.currency}|{r.status}|{r.index}"
                     f"|{r.ts.wall_ms}|{r.ts.logical}\n".encode())
        return h.hexdigest()
