"""A simulated node disk with the semantics of `quorapay.node.storage.Store`.

A write batch lands whole or not at all (one SQLite transaction); a crash loses every batch whose
fsync had not completed. A snapshot install replaces log, ledger and applied index; a compaction
drops the log up to a point, as the real store does. Like the real `transfers` table, a transfer
id can be recorded only once: a second record is an integrity error, which the real node would
crash on.
"""

from __future__ import annotations

from dataclasses import replace

from quorapay.core.hlc import ZERO
from quorapay.core.ledger import Account, Ledger, TransferRecord
from quorapay.core.node_state import WriteBatch
from quorapay.core.types import AccountId, Epoch, LogEntry, LogIndex, NodeId, TransferId


class IntegrityError(Exception):
    """The batch breaks a constraint the real database enforces (a transfer recorded twice)."""


class SimDisk:
    def __init__(self) -> None:
        self.promised = Epoch(0)
        self.promised_to: NodeId | None = None
        self.log: list[LogEntry] = []  # the entries after log_start
        self.log_start = LogIndex(0)
        self.log_start_epoch = Epoch(0)
        self.log_start_ts = ZERO
        self.applied_index = LogIndex(0)
        self._accounts: dict[AccountId, Account] = {}
        self._transfers: dict[TransferId, TransferRecord] = {}

    def write(self, batch: WriteBatch) -> None:
        """Make `batch` durable. Raises IntegrityError (and writes nothing) on a duplicate."""
        install = batch.persist.install if batch.persist is not None else None
        installed = Ledger.from_state(install.state) if install is not None else None
        existing = installed.transfers if installed is not None else self._transfers
        duplicates = [r.transfer.id for r in batch.delta.transfers if r.transfer.id in existing]
        if duplicates:
            raise IntegrityError(f"transfer {duplicates[0]} recorded twice")
        if install is not None and installed is not None:
            self._accounts = {a.id: replace(a) for a in installed.accounts.values()}
            self._transfers = dict(installed.transfers)
            self.log, self.log_start, self.log_start_epoch = [], install.index, install.last_epoch
            self.log_start_ts = install.last_ts
            self.applied_index = install.index
        if batch.persist is not None:
            del self.log[max(0, batch.persist.keep_upto - self.log_start):]
            self.log.extend(batch.persist.entries)
            if batch.persist.promised_epoch is not None:
                self.promised = batch.persist.promised_epoch
                self.promised_to = batch.persist.promised_to
        if batch.applied_index is not None:
            for account in batch.delta.accounts.values():
                self._accounts[account.id] = replace(account)  # the row, not the live object
            for record in batch.delta.transfers:
                self._transfers[record.transfer.id] = record
            self.applied_index = batch.applied_index
        persist = batch.persist
        if persist is not None and persist.compact_upto is not None:
            assert persist.compact_epoch is not None
            del self.log[:persist.compact_upto - self.log_start]
            self.log_start, self.log_start_epoch = persist.compact_upto, persist.compact_epoch
            self.log_start_ts = persist.compact_ts or ZERO

    def ledger(self) -> Ledger:
        """The ledger as a restarted node loads it."""
        return Ledger([replace(a) for a in self._accounts.values()], self._transfers.values())

    def transfer(self, transfer_id: TransferId) -> TransferRecord | None:
        return self._transfers.get(transfer_id)
