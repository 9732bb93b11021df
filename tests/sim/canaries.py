"""Test-only variants of the node with one planted bug each -- in the core, the executor or
the store. The simulator must catch every one of them."""

from __future__ import annotations

from quorapay.core.executor import Executor
from quorapay.core.ledger import (
    Delta,
    Ledger,
    SnapshotSource,
    Status,
    TransferRecord,
    TransferRow,
)
from quorapay.core.ledger.ledger import Written
from quorapay.core.messages import Append, AppendAck, InstallSnapshot, Message
from quorapay.core.node_state import Work
from quorapay.core.ready import Outgoing, ReadsConfirmed
from quorapay.core.replica import Replica, Role
from quorapay.core.types import Epoch, EpochStart, LogEntry, LogIndex, NodeId, TransferId
from quorapay.node.storage import Store
from quorapay.sim.node import Key, Variant


class SendBeforeDurable(Executor[Key]):
    """Sends every message of a batch as soon as its write starts, not only a leader's Appends:
    acknowledgements and promises leave before they are durable."""

    def _sends_now(self, work: Work, outgoing: Outgoing) -> bool:
        return True


class ReplyBesideEarlierWrites(Executor[Key]):
    """Sends the replies of work that writes nothing at once, though an earlier batch is still
    being written: an acknowledgement of a heartbeat claims entries not yet on disk."""

    def _sends_now(self, work: Work, outgoing: Outgoing) -> bool:
        return work.batch.empty or not outgoing.after_persist


class SyncNormalStore(Store):
    """WAL with synchronous=NORMAL, the setting most guides recommend: a commit is not
    fsynced (only checkpoints are), so a crash can take back an acknowledged write."""

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")


class PromiseWithNextBatch(Replica):
    """Writes a raised promise only with the next batch that changes the log, so a Promise
    (or an ack of a new leader) can leave before the promise is on disk."""

    def _persist_needed(self) -> bool:
        return (self._written_upto != self._written_last
                or self._log.last_index != self._written_upto
                or self._install is not None or self._compaction is not None)


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


class CountSelfBeforeDurable(Replica):
    """A leader counts itself towards a majority as soon as it hands its entries to the
    writer, not once they are durable (with writes pipelined, it steps acknowledgements while
    its own write is in flight)."""

    def _maybe_commit(self) -> None:
        durable = self._durable_upto
        self._durable_upto = self._written_upto
        try:
            super()._maybe_commit()
        finally:
            self._durable_upto = durable


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
        self._written_upto = LogIndex(min(self._written_upto, index))
        self._lower_durable(index)


class ApplyTwiceOnRetry(Ledger):
    """Applies a transfer again when its id comes back (a retry), instead of answering the
    original outcome."""

    def _written(self, delta: Delta) -> Written:
        book = Written(self, delta)
        book.decided = lambda transfer_id: None  # nothing was ever decided
        keep = book.record

        def record(record: TransferRecord) -> None:
            self._recent.pop(record.transfer.id, None)  # decided again: a new row
            keep(record)
        book.record = record
        return book


class ReadsWithoutConfirmation(Replica):
    """Serves a read at once from what it has committed while it believes it leads (a lease
    nobody checks): a deposed leader that has not heard of it yet answers from the past."""

    def _on_read(self, read: int) -> None:
        if self._refusal() is None:
            self._outcomes.append(ReadsConfirmed(reads=(read,), index=self._commit))
            return
        super()._on_read(read)


class InstallStaleSnapshot(Replica):
    """Installs any snapshot whose last entry it does not hold -- also one at or below its
    commit index (a late, duplicated or reordered one), going back in time."""

    def _on_install(self, sender: NodeId, snapshot: InstallSnapshot) -> None:
        if self._log.epoch_at(snapshot.index) != snapshot.last_epoch:
            self._install_snapshot(snapshot)
        self._verified = max(self._verified, snapshot.index)
        self._commit = max(self._commit, snapshot.index)
        self._send(sender, AppendAck(epoch=snapshot.epoch, match_index=snapshot.index, seq=0))


class NoWitnessOnTakeover(Replica):
    """A new leader stamps its entries from its own clock, without first moving its clock past
    the adopted log's last timestamp."""

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self._recovery = None
        self._epoch_start = LogIndex(self._log.last_index + 1)
        self._log.append(LogEntry(index=self._epoch_start, epoch=self._epoch,
                                  payload=EpochStart(leader=self.node_id),
                                  ts=self._clock.now(self._wall)))
        for progress in self._progress.values():
            progress.match_index = LogIndex(0)
            progress.rewind(self._epoch_start, self._now)


class CommitOlderEpochByCount(Replica):
    """Commits an index once a majority holds it, whatever the epoch of its entry: an entry of
    an older epoch can be committed by counting replicas (Raft's Figure 8)."""

    def _maybe_commit(self) -> None:
        if self.role is not Role.LEADER or self.suspended:
            return
        durable = sorted([self._durable_upto, *(p.match_index for p in self._progress.values())],
                         reverse=True)
        candidate = durable[self._quorum - 1]
        if candidate > self._commit:
            self._commit = candidate
            self._commit_notice = True
            self._maybe_confirm_reads()


class _MovedMoneyOnly(SnapshotSource):
    def read(self, after: TransferId | None, limit: int) -> tuple[list[TransferRow], bool]:
        records, last = super().read(after, limit)
        return [r for r in records if r.status is Status.OK], last


class SnapshotKeepsMovedMoney(Ledger):
    """A snapshot carries only the transfers that moved money: the ids of refused ones are
    forgotten by whoever installs it, so a retry of one is decided again."""

    def snapshot_source(self) -> SnapshotSource:
        source = super().snapshot_source()
        return _MovedMoneyOnly(index=source.index, accounts=source.accounts, held=source.held,
                               store=source.store)


CANARIES = {
    "acknowledge before fsync": Variant(executor=SendBeforeDurable),
    "reply beside an earlier batch's write": Variant(executor=ReplyBesideEarlierWrites),
    "commit without fsync (synchronous=NORMAL)": Variant(store=SyncNormalStore),
    "promise written with the next batch": Variant(replica=PromiseWithNextBatch),
    "commit without a majority": Variant(replica=CommitWithoutMajority),
    "a leader counts itself before its fsync": Variant(replica=CountSelfBeforeDurable),
    "skip the epoch check": Variant(replica=SkipEpochCheck),
    "truncate a committed entry": Variant(replica=TruncateCommitted),
    "apply twice on retry": Variant(ledger=ApplyTwiceOnRetry),
    "serve reads without confirming leadership": Variant(replica=ReadsWithoutConfirmation),
    "install a stale snapshot": Variant(replica=InstallStaleSnapshot),
    "no clock witness on takeover": Variant(replica=NoWitnessOnTakeover),
    "commit an older epoch's entry by counting (Figure 8)":
        Variant(replica=CommitOlderEpochByCount),
    "snapshots forget refused transfer ids": Variant(ledger=SnapshotKeepsMovedMoney),
}
