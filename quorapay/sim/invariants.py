"""The invariants a simulation checks, as it runs. Each violation is named.

| name | what it checks |
|---|---|
| one leader commits per epoch | no two nodes advance a commit index as leader of the same epoch |
| log matching | two durable logs holding an entry of the same index and epoch agree up to it |
| same entry applied at each index | every replica applies the same entry at each index |
| timestamps increase with the index | each entry has a larger timestamp than the one before it |
| committed entries survive | a leader serving epoch E holds every entry committed before E |
| money conserved | the balances of each currency sum to zero on every replica |
| no transfer applied twice | no replica records a transfer id twice (the database would refuse) |
| reads are not stale | a read reflects every write acknowledged before it began |
| reads are linearizable | a read's balances are the log's at the index it reports |
| commits are durable on a majority | a leader's commit index is held by a majority of disks |
| applied state never goes back | no node's durable applied index decreases |
| acknowledged transfers applied | every acknowledged transfer is on every replica as told |
| ledgers converge | at the end, replicas that applied the same index hold the same ledger |
| commits again after faults | once faults stop, a write commits within the bound |
| nodes do not crash | no node raises (a core LocalError is a broken protocol invariant) |
| acknowledged entries are durable | no node acknowledges (AppendAck, Promise) what its disk lacks |
| promises are durable | no Promise, AppendAck or AppendNack of an epoch not promised on disk |
| promises are kept | no node acknowledges an Append of an epoch older than the one it promised |
| durable writes survive a crash | a restart recovers every completed write: log, promise, applied |
| storage writes succeed | no write of the real store fails but by an injected disk fault |
| peers follow the protocol | no node drops a message no correct peer sends (PeerMisbehaved) |
| coordination finds what it wrote | the coordinator finds no garbage in the model ZooKeeper |
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quorapay.check.ledger_rules import LedgerRules
from quorapay.core.digest import entry_digest
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Delta, Ledger
from quorapay.core.messages import AppendAck, AppendNack, Promise
from quorapay.core.node_state import Work, WriteBatch
from quorapay.core.ready import Outgoing
from quorapay.core.replica import Role
from quorapay.core.types import (
    RESOLVES,
    AccountId,
    Epoch,
    LogEntry,
    LogIndex,
    NodeId,
    Transfer,
    TransferId,
)

if TYPE_CHECKING:
    from quorapay.node.storage import Restored
    from quorapay.sim.node import SimNode
    from quorapay.sim.world import World


_BIG = 1 << 62


@dataclass(frozen=True, slots=True)
class Violation:
    name: str
    detail: str
    time: float

    def __str__(self) -> str:
        return f"{self.name}: {self.detail} (at {self.time:.3f}s)"


@dataclass(frozen=True, slots=True)
class Acknowledged:
    transfer: Transfer
    status: str
    index: LogIndex


COVERAGE = {  # the hard states a seed should reach, and what reaching one means
    "figure 8": "a leader takes over holding uncommitted entries of an older epoch that a "
                "majority of nodes holds (Raft's Figure 8)",
    "late snapshot": "a snapshot arrives at or below its receiver's commit index (late, "
                     "duplicated or reordered)",
    "read at a deposed leader": "a read reaches a node that still leads an epoch a newer one "
                                "has replaced",
    "takeover behind the clock": "a new leader's wall clock is behind its log's last timestamp",
    "retry after a snapshot": "a decided transfer is retried on a node that installed a "
                              "snapshot covering it",
    "crash while writing": "a node dies with a batch half-way to its disk",
    "crash between the steps of a Ready": "a node dies after a batch is durable, before its "
                                          "messages and answers are all out",
    "storage fault": "a write fails: the process dies inside it, fsync EIO, or a full disk",
    "silent leader deposed": "a majority of followers agree that their leader is silent, and "
                             "its ZooKeeper leadership is deleted before its session expires",
    "snapshot resumed": "a snapshot's parts are resent from the receiver's acknowledgement "
                        "(parts lost or reordered, a link cut, the sender paused)",
    "snapshot started over": "a receiver that lost its staged parts (it restarted) is sent the "
                             "snapshot again from its first part",
    "snapshot replaced halfway": "a half-received snapshot is given up for a newer one (a new "
                                 "leader, a later index, or its sender gone quiet)",
}


class Checker:
    def __init__(self, world: World) -> None:
        self._world = world
        self.violations: list[Violation] = []
        self.coverage: Counter[str] = Counter()  # how often each hard state was reached
        self._reference = Ledger()  # each index applied once, in order: what reads must see
        self._reference_index = 0
        self._rules = LedgerRules()  # the ledger rules, on the reference's rows
        self._balances: dict[AccountId, list[tuple[int, int]]] = {}  # (index, balance) history
        self._snapshot_at: dict[NodeId, int] = {}  # per node: the index of its last snapshot
        self._prefixes: dict[NodeId, list[str]] = {}  # per node: hash of its durable log prefix
        # per node: the messages staged and not yet sent that claim the log through an index,
        # with the epoch of the entry there when they were made (by id; the message is kept)
        self._claims: dict[NodeId, dict[int, tuple[Any, Epoch | None]]] = {}
        self._prefix_at: dict[tuple[int, int], str] = {}  # (index, epoch) -> prefix hash
        self._applied: dict[int, tuple[str, Epoch]] = {}  # index -> (entry, commit epoch bound)
        self._stamps: dict[int, Timestamp] = {}  # index -> the applied entry's timestamp
        self._committer: dict[Epoch, NodeId] = {}
        self._last_commit: dict[NodeId, LogIndex] = {}
        self._serving: dict[NodeId, bool] = {}
        self.acknowledged: dict[TransferId, Acknowledged] = {}
        self.highest_acknowledged = 0  # the largest index any client was told about
        self.highest_granted = Epoch(0)  # the newest epoch ZooKeeper granted
        self.switchovers: Counter[str] = Counter()  # handed over; taken by the target first
        self._handed: dict[Epoch, NodeId] = {}  # epoch handed over -> to whom
        self._durable_promise: dict[NodeId, Epoch] = {}  # per node: the promise on its disk
        self._durable_applied: dict[NodeId, LogIndex] = {}  # and its applied index
        self._promise_before: dict[NodeId, Epoch] = {}  # and its promise before the last write
        self._interrupted: dict[NodeId, int] = {}  # a failed write's keep_upto

    def violation(self, name: str, detail: str) -> None:
        self.violations.append(Violation(name, detail, self._world.now))

    def reached(self, state: str) -> None:
        assert state in COVERAGE, state
        self.coverage[state] += 1

    @property
    def commits(self) -> int:
        return len(self._applied)

    # ------------------------------------------------------------------ from nodes

    def started(self, node: SimNode, restored: Restored) -> None:
        """`node` recovered `restored` from its disk: its durable log, as the mirror knows it
        (a batch whose write a crash interrupted may or may not have landed)."""
        self._restarted(node.id, restored)
        self._claims[node.id] = {}
        state = node.state
        assert state is not None
        self._last_commit[node.id] = state.replica.commit_index
        self._serving[node.id] = False

    def _restarted(self, node: NodeId, restored: Restored) -> None:
        start = restored.snapshot_index
        before = self._prefixes.get(node, [])
        prefix = before[:start]
        if start:
            at = self._prefix_at.get((start, restored.snapshot_epoch))
            prefix = [*prefix, *[""] * (start - len(prefix))]
            prefix[start - 1] = at if at is not None else prefix[start - 1]
        for entry in restored.log:
            prefix.append(_chain(prefix[-1] if prefix else "", entry_digest(entry)))
            self._prefix_at.setdefault((entry.index, entry.epoch), prefix[-1])
        self._survived(node, restored, before, prefix)
        self._prefixes[node] = prefix
        self._durable_promise[node] = self._promise_before[node] = restored.promised_epoch
        self._durable_applied[node] = restored.applied_index

    def _survived(self, node: NodeId, restored: Restored, before: list[str],
                  after: list[str]) -> None:
        """Everything a completed write made durable is still there after a crash (a write
        that a crash interrupted may have landed too, or not)."""
        lost = []
        if restored.promised_epoch < self._durable_promise.get(node, Epoch(0)):
            lost.append(f"promised epoch {self._durable_promise[node]} became "
                        f"{restored.promised_epoch}")
        if restored.applied_index < self._durable_applied.get(node, LogIndex(0)):
            lost.append(f"applied index {self._durable_applied[node]} became "
                        f"{restored.applied_index}")
        keep = self._interrupted.pop(node, None)
        held = len(before) if keep is None else min(len(before), keep)
        if len(after) < held or (held and before[held - 1] and after[held - 1]
                                 and after[held - 1] != before[held - 1]):
            lost.append(f"its durable log through index {held} is not what it was")
        if lost:
            self.violation("durable writes survive a crash", f"{node}: {'; '.join(lost)}")

    def staged(self, node: SimNode, work: Work) -> None:
        """`node` made these messages: note which entry each claim is about, as its log is now
        (writes are pipelined: by the time one is sent, a later batch may have cut that entry,
        and the claim is about the log that the disk holds then)."""
        state = node.state
        assert state is not None
        self._check_applied(node, work)
        claims = self._claims[node.id]
        for outgoing in work.ready.messages:
            message = outgoing.message
            index = (message.match_index if isinstance(message, AppendAck)
                     else message.last_index if isinstance(message, Promise) else 0)
            if index:
                claims[id(message)] = (message, state.replica.log.epoch_at(index))

    def _check_applied(self, node: SimNode, work: Work) -> None:
        """`node` applied these entries to its ledger (in memory: reads and answers may come
        from it before the write lands)."""
        state = node.state
        assert state is not None
        for entry, _ in work.applied:
            self._follow_reference(entry)
            digest = entry_digest(entry)
            first = self._applied.setdefault(entry.index,
                                             (digest, state.replica.promised_epoch))
            if first[0] != digest:
                self.violation("same entry applied at each index",
                               f"{node.id} applied a different entry at index {entry.index}")
            elif entry.index not in self._stamps:
                self._check_stamp(entry.index, entry.ts)
        if work.applied and any(total != 0 for total in state.ledger.recount_totals().values()):
            self.violation("money conserved",
                           f"{node.id}: balances sum to {state.ledger.recount_totals()}")
        if work.applied and state.ledger.totals() != state.ledger.recount_totals():
            self.violation("the ledger's kept totals and digest match its rows",
                           f"{node.id}: kept totals {state.ledger.totals()}, recounted "
                           f"{state.ledger.recount_totals()}")

    def sent(self, node: SimNode, outgoing: Outgoing) -> None:
        """A message that only durable state may justify: is it on `node`'s disk?"""
        message = outgoing.message
        if isinstance(message, AppendAck):
            self._check_held(node, message, message.match_index, "acknowledged")
        kept = self._promise_before.get(node.id, Epoch(0))
        if isinstance(message, AppendAck) and message.epoch < kept:
            self.violation("promises are kept",
                           f"{node.id} acknowledged an Append of epoch {message.epoch} after "
                           f"promising epoch {kept}")
        if isinstance(message, Promise | AppendAck | AppendNack) \
                and self._durable_promise[node.id] < message.epoch:
            self.violation("promises are durable",
                           f"{node.id} sent {type(message).__name__} of epoch {message.epoch} "
                           f"with epoch {self._durable_promise[node.id]} promised on disk")
        if isinstance(message, Promise):
            self._check_held(node, message, message.last_index, "promised with last")

    def _check_held(self, node: SimNode, message: Any, index: int, what: str) -> None:
        """`node` told a peer it holds its log through `index`: does its disk, entry for entry?"""
        prefix = self._prefixes[node.id]
        claimed = self._claims[node.id].pop(id(message), None)
        epoch = claimed[1] if claimed is not None and claimed[0] is message else None
        expected = self._prefix_at.get((index, epoch)) if epoch is not None else None
        if index > len(prefix) or (epoch is not None and prefix[index - 1] not in ("", expected)):
            self.violation("acknowledged entries are durable",
                           f"{node.id} {what} index {index} (epoch {epoch}), which its disk "
                           f"does not hold ({len(prefix)} entries on disk)")

    def unwritten(self, node: SimNode) -> None:
        """`node` finished work that wrote nothing: its disk's promise is the one in force."""
        self._promise_before[node.id] = self._durable_promise[node.id]

    def storage_stopped(self, node: SimNode, batches: Sequence[WriteBatch]) -> None:
        """An injected disk fault failed a write of `node`: it stops, as the real node does.
        The write may have landed in part on disk (a crash keeps what it keeps): recovery must
        still hold the log up to where its batches began to change it."""
        self._interrupted[node.id] = min(
            [b.persist.keep_upto for b in batches if b.persist is not None],
            default=len(self._prefixes[node.id]))

    def handed_over(self, to: NodeId, epoch: Epoch) -> None:
        self.switchovers["handed over"] += 1
        self._handed[epoch] = to

    def granted(self, node: SimNode, epoch: Epoch) -> None:
        """ZooKeeper granted `node` `epoch`: was it the target of the handover before it? Is
        this takeover one of the hard ones?"""
        self.highest_granted = max(self.highest_granted, epoch)
        for handed in sorted(e for e in self._handed if e < epoch):
            to = self._handed.pop(handed)
            if to == node.id:
                self.switchovers["taken over by their target"] += 1
        if self._majority_holds_uncommitted():
            self.reached("figure 8")
        state = node.state
        if state is not None and node.wall_ms() < state.replica.log.last_ts.wall_ms:
            self.reached("takeover behind the clock")

    def _majority_holds_uncommitted(self) -> bool:
        """Does a majority of nodes hold the same entry above every index yet applied?"""
        majority = len(self._prefixes) // 2 + 1
        applied = max(self._applied, default=0)
        longest = max((len(p) for p in self._prefixes.values()), default=0)
        for index in range(applied + 1, longest + 1):
            held = Counter(p[index - 1] for p in self._prefixes.values()
                           if len(p) >= index and p[index - 1])
            if held and held.most_common(1)[0][1] >= majority:
                return True
        return False

    def node_failed(self, node: SimNode, exc: Exception) -> None:
        self.violation("nodes do not crash", f"{node.id}: {type(exc).__name__}: {exc}")

    def durable(self, node: SimNode, work: Work) -> None:
        """A batch reached `node`'s disk: check its log and what it applied."""
        persist = work.batch.persist
        # (an ack of the old leader may leave with the Promise to a new one: it was made first)
        self._promise_before[node.id] = self._durable_promise[node.id]
        if persist is not None and persist.promised_epoch is not None:
            self._durable_promise[node.id] = persist.promised_epoch
        if persist is not None:
            prefix = self._prefixes[node.id]
            if persist.install is not None:
                self._installed(node, prefix, persist.install.index, persist.install.last_epoch)
            del prefix[persist.keep_upto:]
            for entry in persist.entries:
                prefix.append(_chain(prefix[-1] if prefix else "", entry_digest(entry)))
                seen = self._prefix_at.setdefault((entry.index, entry.epoch), prefix[-1])
                if seen != prefix[-1]:
                    self.violation("log matching", f"{node.id} holds a different log than "
                                   f"another node through index {entry.index}, epoch "
                                   f"{entry.epoch}")
        state = node.state
        assert state is not None
        applied = work.batch.applied_index
        if applied is not None:
            if applied < self._durable_applied.get(node.id, LogIndex(0)):
                self.violation("applied state never goes back",
                               f"{node.id} went from applied index "
                               f"{self._durable_applied[node.id]} back to {applied}")
            if persist is not None and persist.install is not None:
                self._snapshot_at[node.id] = persist.install.index
            self._durable_applied[node.id] = applied

    def _follow_reference(self, entry: LogEntry) -> None:
        """Apply each index once, in order, to a reference ledger: balances at every index."""
        if entry.index != self._reference_index + 1:
            return
        delta = Delta()
        results = self._reference.apply(entry, delta)
        self._reference_index = entry.index
        for rule, detail in self._rules.check(entry, results, delta):
            self.violation(rule, detail)
        for account in delta.accounts.values():
            self._balances.setdefault(account.id, []).append((entry.index, account.balance))

    def _balance_at(self, account: AccountId, index: int) -> int | None:
        history = self._balances.get(account, [])
        at = bisect.bisect_right(history, (index, _BIG)) - 1
        return history[at][1] if at >= 0 else None

    def _check_stamp(self, index: int, ts: Timestamp) -> None:
        self._stamps[index] = ts
        before, after = self._stamps.get(index - 1), self._stamps.get(index + 1)
        if (before is not None and not before < ts) or (after is not None and not ts < after):
            self.violation("timestamps increase with the index",
                           f"entry {index} has timestamp {ts}, its neighbours {before} and "
                           f"{after}")

    def _installed(self, node: SimNode, prefix: list[str], index: LogIndex, epoch: Epoch
                   ) -> None:
        """A snapshot replaced `node`'s log up to (index, epoch): an entry some node held."""
        at = self._prefix_at.get((index, epoch))
        if at is None:
            self.violation("log matching", f"{node.id} installed a snapshot at index {index}, "
                           f"epoch {epoch}, an entry no node ever held")
            at = ""
        prefix[:] = [""] * (index - 1) + [at] if index else []

    def finished(self, node: SimNode) -> None:
        """`node` advanced: check who commits in which epoch, and what a new leader holds."""
        state = node.state
        assert state is not None
        replica = state.replica
        if replica.role is Role.LEADER and replica.commit_index > self._last_commit[node.id]:
            owner = self._committer.setdefault(replica.epoch, node.id)
            if owner != node.id:
                self.violation("one leader commits per epoch",
                               f"{owner} and {node.id} both committed in epoch {replica.epoch}")
            self._check_majority(node, replica.commit_index)
        self._last_commit[node.id] = replica.commit_index
        serving = replica.serving
        if serving and not self._serving[node.id]:
            self._check_completeness(node)
        self._serving[node.id] = serving

    def _check_majority(self, node: SimNode, index: int) -> None:
        """A leader commits only what a majority of disks holds (its own counts once durable)."""
        state = node.state
        assert state is not None
        epoch = state.replica.log.epoch_at(index)
        if epoch is None:
            return  # compacted here already: it was applied, so committed
        expected = self._prefix_at.get((index, epoch))
        held = sum(1 for prefix in self._prefixes.values() if len(prefix) >= index
                   and prefix[index - 1] in ("", expected))
        if expected is None or held < len(self._prefixes) // 2 + 1:
            self.violation("commits are durable on a majority",
                           f"{node.id} committed index {index} held on {held} disks")

    def _check_completeness(self, node: SimNode) -> None:
        state = node.state
        assert state is not None
        replica = state.replica
        for index, (digest, bound) in self._applied.items():
            if bound >= replica.epoch or index <= replica.log.start:
                continue  # (entries compacted here were applied, or came in a snapshot)
            if index > replica.log.last_index or entry_digest(replica.log.entry(index)) != digest:
                self.violation("committed entries survive",
                               f"{node.id} serves epoch {replica.epoch} without the entry "
                               f"committed at index {index}")
                return

    # ------------------------------------------------------------------ from clients

    def acknowledge(self, transfer: Transfer, status: str, index: LogIndex) -> None:
        self.acknowledged.setdefault(transfer.id, Acknowledged(transfer, status, index))
        self.highest_acknowledged = max(self.highest_acknowledged, index)

    def read(self, client: str, index: LogIndex, floor: int, value: dict[str, int],
             accounts: tuple[str, ...] = ()) -> None:
        """A read answered: not older than what was acknowledged before it began, and exactly
        the balances the log gives at the index it reports (checked against the history)."""
        if index < floor:
            self.violation("reads are not stale", f"{client} read at index {index} after a "
                           f"write was acknowledged at index {floor}")
        if index > self._reference_index:
            self.violation("reads are linearizable", f"{client} read at index {index}, which "
                           "no node has applied")
            return
        for account in {*value, *accounts}:
            expected, balance = self._balance_at(AccountId(account), index), value.get(account)
            if expected != balance:
                self.violation("reads are linearizable",
                               f"{client} read {account} = {balance} at index {index}; the log "
                               f"gives {expected}")
                return

    def retried(self, node: SimNode, transfer_id: TransferId) -> None:
        """A request retried a transfer: was it decided before a snapshot this node installed?"""
        record = self._reference.transfers.get(transfer_id)
        if record is not None and record.index <= self._snapshot_at.get(node.id, 0):
            self.reached("retry after a snapshot")

    # ------------------------------------------------------------------ at the end

    def final(self, nodes: list[SimNode]) -> None:
        self._converged(nodes)
        transfers = {node.id: node.recovered().ledger.transfers for node in nodes}
        for ack in self.acknowledged.values():
            for node in nodes:
                record = transfers[node.id].get(ack.transfer.id)
                if record is None or record.status.value != ack.status or \
                        not _same_body(record.transfer, ack.transfer):
                    self.violation("acknowledged transfers applied",
                                   f"{node.id}: transfer {ack.transfer.id} was acknowledged "
                                   f"{ack.status} but is "
                                   f"{'missing' if record is None else record.status.value}")
                    return


    def _converged(self, nodes: list[SimNode]) -> None:
        ledgers: dict[int, tuple[NodeId, str]] = {}
        for node in nodes:
            if node.state is None:
                continue
            digest = node.state.ledger.digest()
            if digest != node.state.ledger.recount_digest():
                self.violation("the ledger's kept totals and digest match its rows",
                               f"{node.id}: kept digest {digest[:12]}, recounted "
                               f"{node.state.ledger.recount_digest()[:12]}")
            first = ledgers.setdefault(node.state.applied_index, (node.id, digest))
            if first[1] != digest:
                self.violation("ledgers converge",
                               f"{first[0]} and {node.id} hold different ledgers at applied "
                               f"index {node.state.applied_index}")
                return


def _same_body(recorded: Transfer, sent: Transfer) -> bool:
    """A post or void is recorded with its pending transfer's accounts and currency."""
    if sent.flags & RESOLVES:
        return (recorded.id, recorded.pending_id, recorded.amount, recorded.flags) == (
            sent.id, sent.pending_id, sent.amount, sent.flags)
    return recorded == sent


def _chain(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}{digest}".encode()).hexdigest()[:24]
