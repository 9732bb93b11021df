"""A simulated node disk with the semantics of `quorapay.node.storage.Store`.

A write batch lands whole or not at all (one SQLite transaction); a crash loses every batch whose
fsync had not completed. Like the real `transfers` table, a transfer id can be recorded only once:
a second record is an integrity error, which the real node would crash on.
"""

from __future__ import annotations

from dataclasses import replace

from quorapay.core.ledger import Account, Ledger, TransferRecord
from quorapay.core.node_state import WriteBatch
from quorapay.core.types import AccountId, Epoch, LogEntry, LogIndex, TransferId


class IntegrityError(Exception):
    """The batch breaks a constraint the real database enforces (a transfer recorded twice)."""


class SimDisk:
    def __init__(self) -> None:
        self.promised = Epoch(0)
        self.log: list[LogEntry] = []
        self.applied_index = LogIndex(0)
        self._accounts: dict[AccountId, Account] = {}
        self._transfers: dict[TransferId, TransferRecord] = {}

    def write(self, batch: WriteBatch) -> None:
        """Make `batch` durable. Raises IntegrityError (and writes nothing) on a duplicate."""
        duplicates = [r.transfer.id for r in batch.delta.transfers
                      if r.transfer.id in self._transfers]
        if duplicates:
            raise IntegrityError(f"transfer {duplicates[0]} recorded twice")
        if batch.persist is not None:
            del self.log[batch.persist.keep_upto:]
            self.log.extend(batch.persist.entries)
            if batch.persist.promised_epoch is not None:
                self.promised = batch.persist.promised_epoch
        if batch.applied_index is not None:
            for account in batch.delta.accounts.values():
                self._accounts[account.id] = replace(account)  # the row, not the live object
            for record in batch.delta.transfers:
                self._transfers[record.transfer.id] = record
            self.applied_index = batch.applied_index

    def ledger(self) -> Ledger:
        """The ledger as a restarted node loads it."""
        return Ledger([replace(a) for a in self._accounts.values()], self._transfers.values())

    def transfer(self, transfer_id: TransferId) -> TransferRecord | None:
        return self._transfers.get(transfer_id)
