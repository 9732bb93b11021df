"""Test-only variants of the core with one planted bug each. The simulator must catch them."""

from __future__ import annotations

from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Delta, Ledger, Result, Status, TransferRecord
from quorapay.core.messages import Append, Message
from quorapay.core.replica import Replica, Role
from quorapay.core.types import Epoch, LogIndex, NodeId, Transfer
from quorapay.sim.node import Variant


class CommitWithoutMajority(Replica):
    """Counts an index committed once one node fewer than a majority holds it."""

    def _maybe_commit(self) -> None:
        if self.role is not Role.LEADER or self.suspended:
            return
        durable = sorted([self._durable_upto, *(p.match_index for p in self._progress.values())],
                         reverse=True)
        candidate = durable[max(self._quorum - 2, 0)]
        if candidate > self._commit and self._log.epoch_at(candidate) == self._epoch:
            self._commit = candidate
            self._commit_notice = True
            self._maybe_confirm_reads()


class SkipEpochCheck(Replica):
    """Accepts Appends from leaders of epochs it has promised not to follow any more."""

    def _on_message(self, sender: NodeId, message: Message) -> None:
        if isinstance(message, Append) and message.epoch < self._promised \
                and self.role is Role.FOLLOWER:
            self._on_append(sender, message)
            return
        super()._on_message(sender, message)

    def _follow(self, sender: NodeId, epoch: Epoch) -> bool:
        if epoch < self._promised and self.role is Role.FOLLOWER:
            self.leader = sender
            return True
        return super()._follow(sender, epoch)


class TruncateCommitted(Replica):
    """A new leader adopts its own log without asking a majority for theirs, and followers
    truncate whatever conflicts with it, committed or not."""

    def _maybe_finish_promises(self) -> None:
        if self._recovery is not None and self._recovery.fetching is None \
                and self._durable_promise == self._epoch and not self._persist_needed():
            self._become_leader()

    def _truncate_after(self, index: LogIndex) -> None:
        self._log.truncate_after(index)
        self._durable_upto = LogIndex(min(self._durable_upto, index))


class ApplyTwiceOnRetry(Ledger):
    """Applies a transfer again when its id comes back (a retry), instead of answering the
    original outcome."""

    def _transfer(self, transfer: Transfer, index: LogIndex, ts: Timestamp, delta: Delta,
                  ) -> Result:
        status = self._decide(transfer)
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


CANARIES = {
    "acknowledge before fsync": Variant(send_before_durable=True),
    "commit without a majority": Variant(replica=CommitWithoutMajority),
    "skip the epoch check": Variant(replica=SkipEpochCheck),
    "truncate a committed entry": Variant(replica=TruncateCommitted),
    "apply twice on retry": Variant(ledger=ApplyTwiceOnRetry),
}
