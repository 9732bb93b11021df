"""What a command reads and changes while it is applied: a book of accounts and decisions.

Commands see the ledger only through a `Book`: the ledger itself (changes written through) or
an `Overlay`, a copy-on-write working set over another book. A linked chain applies its members
to an overlay and commits it only if every member succeeded; dropping it undoes them all.
"""

from __future__ import annotations

from typing import Protocol

from quorapay.core.ledger.model import Account, Expiring, TransferRecord
from quorapay.core.types import AccountId, TransferId


class Book(Protocol):
    def account(self, account_id: AccountId) -> Account | None:
        """The account as of the changes made so far."""

    def put(self, account: Account) -> None:
        """Make `account` the current version of its id (a new account, or a changed one)."""

    def decided(self, transfer_id: TransferId) -> TransferRecord | None:
        """The transfer decided with this id, if any (a decision made in this book too)."""

    def record(self, record: TransferRecord) -> None:
        """Keep a newly decided transfer."""

    def schedule(self, expiring: Expiring) -> None:
        """A pending transfer waits to expire."""

    def unschedule(self, transfer_id: TransferId) -> None:
        """A pending transfer waits no longer (it was posted, voided or expired)."""


class Overlay:
    """A working set over `parent`: reads fall through to it, changes stay here until
    `commit` writes them to it, in the order they were made."""

    __slots__ = ("_accounts", "_expiring", "_parent", "_records")

    def __init__(self, parent: Book) -> None:
        self._parent = parent
        self._accounts: dict[AccountId, Account] = {}
        self._records: dict[TransferId, TransferRecord] = {}
        self._expiring: dict[TransferId, Expiring | None] = {}

    def account(self, account_id: AccountId) -> Account | None:
        account = self._accounts.get(account_id)
        return account if account is not None else self._parent.account(account_id)

    def put(self, account: Account) -> None:
        self._accounts[account.id] = account

    def decided(self, transfer_id: TransferId) -> TransferRecord | None:
        record = self._records.get(transfer_id)
        return record if record is not None else self._parent.decided(transfer_id)

    def record(self, record: TransferRecord) -> None:
        self._records[record.transfer.id] = record

    def schedule(self, expiring: Expiring) -> None:
        self._expiring[expiring.id] = expiring

    def unschedule(self, transfer_id: TransferId) -> None:
        self._expiring[transfer_id] = None

    def commit(self) -> None:
        for account in self._accounts.values():
            self._parent.put(account)
        for record in self._records.values():
            self._parent.record(record)
        for transfer_id, expiring in self._expiring.items():
            if expiring is None:
                self._parent.unschedule(transfer_id)
            else:
                self._parent.schedule(expiring)
