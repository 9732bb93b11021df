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
| acknowledged transfers applied | every acknowledged transfer is on every replica as told |
| ledgers converge | at the end, replicas that applied the same index hold the same ledger |
| commits again after faults | once faults stop, a write commits within the bound |
| nodes do not crash | no node raises (a core LocalError is a broken protocol invariant) |
| peers follow the protocol | no node drops a message no correct peer sends (PeerMisbehaved) |
| coordination finds what it wrote | the coordinator finds no garbage in the model ZooKeeper |
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quorapay.core.digest import entry_digest
from quorapay.core.hlc import Timestamp
from quorapay.core.node_state import Work
from quorapay.core.replica import Role
from quorapay.core.types import Epoch, LogIndex, NodeId, Transfer, TransferId

if TYPE_CHECKING:
    from quorapay.sim.node import SimNode
    from quorapay.sim.world import World


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


class Checker:
    def __init__(self, world: World) -> None:
        self._world = world
        self.violations: list[Violation] = []
        self._prefixes: dict[NodeId, list[str]] = {}  # per node: hash of its durable log prefix
        self._prefix_at: dict[tuple[int, int], str] = {}  # (index, epoch) -> prefix hash
        self._applied: dict[int, tuple[str, Epoch]] = {}  # index -> (entry, commit epoch bound)
        self._stamps: dict[int, Timestamp] = {}  # index -> the applied entry's timestamp
        self._committer: dict[Epoch, NodeId] = {}
        self._last_commit: dict[NodeId, LogIndex] = {}
        self._serving: dict[NodeId, bool] = {}
        self.acknowledged: dict[TransferId, Acknowledged] = {}
        self.highest_acknowledged = 0  # the largest index any client was told about
        self.switchovers: Counter[str] = Counter()  # handed over; taken by the target first
        self._handed: dict[Epoch, NodeId] = {}  # epoch handed over -> to whom

    def violation(self, name: str, detail: str) -> None:
        self.violations.append(Violation(name, detail, self._world.now))

    @property
    def commits(self) -> int:
        return len(self._applied)

    # ------------------------------------------------------------------ from nodes

    def started(self, node: SimNode) -> None:
        # durable() mirrors every disk write, so the list kept across a crash is the disk's
        self._prefixes.setdefault(node.id, _prefix_hashes(node.disk.log))
        state = node.state
        assert state is not None
        self._last_commit[node.id] = state.replica.commit_index
        self._serving[node.id] = False

    def handed_over(self, to: NodeId, epoch: Epoch) -> None:
        self.switchovers["handed over"] += 1
        self._handed[epoch] = to

    def granted(self, node: NodeId, epoch: Epoch) -> None:
        """ZooKeeper granted `node` `epoch`: was it the target of the handover before it?"""
        for handed in sorted(e for e in self._handed if e < epoch):
            to = self._handed.pop(handed)
            if to == node:
                self.switchovers["taken over by their target"] += 1

    def node_failed(self, node: SimNode, exc: Exception) -> None:
        self.violation("nodes do not crash", f"{node.id}: {type(exc).__name__}: {exc}")

    def durable(self, node: SimNode, work: Work) -> None:
        """A batch reached `node`'s disk: check its log and what it applied."""
        persist = work.batch.persist
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
        for entry, _ in work.applied:
            digest = entry_digest(entry)
            first = self._applied.setdefault(entry.index,
                                             (digest, state.replica.promised_epoch))
            if first[0] != digest:
                self.violation("same entry applied at each index",
                               f"{node.id} applied a different entry at index {entry.index}")
            elif entry.index not in self._stamps:
                self._check_stamp(entry.index, entry.ts)
        if work.applied and any(total != 0 for total in state.ledger.totals().values()):
            self.violation("money conserved",
                           f"{node.id}: balances sum to {state.ledger.totals()}")

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
        self._last_commit[node.id] = replica.commit_index
        serving = replica.serving
        if serving and not self._serving[node.id]:
            self._check_completeness(node)
        self._serving[node.id] = serving

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

    def read(self, client: str, index: LogIndex, floor: int) -> None:
        if index < floor:
            self.violation("reads are not stale", f"{client} read at index {index} after a "
                           f"write was acknowledged at index {floor}")

    # ------------------------------------------------------------------ at the end

    def final(self, nodes: list[SimNode]) -> None:
        self._converged(nodes)
        for ack in self.acknowledged.values():
            for node in nodes:
                record = node.disk.transfer(ack.transfer.id)
                if record is None or record.status.value != ack.status or \
                        record.transfer != ack.transfer:
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
            first = ledgers.setdefault(node.state.applied_index, (node.id, digest))
            if first[1] != digest:
                self.violation("ledgers converge",
                               f"{first[0]} and {node.id} hold different ledgers at applied "
                               f"index {node.state.applied_index}")
                return


def _chain(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}{digest}".encode()).hexdigest()[:24]


def _prefix_hashes(log: list) -> list[str]:  # type: ignore[type-arg]
    hashes: list[str] = []
    for entry in log:
        hashes.append(_chain(hashes[-1] if hashes else "", entry_digest(entry)))
    return hashes
