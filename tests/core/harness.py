"""A deterministic cluster of real replicas for core tests: no trio, no mocks.

Each node is the real NodeState, carried out by the production Executor (the Ready contract:
persist, then send, then apply, then answer); its ports here are a model disk (what a crash
keeps, written at once), a FIFO network that tests deliver, drop, cut or reorder explicitly, and
an optional wall clock per node. Tests observe every outcome the core produced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from quorapay.core.executor import Executor, Observer, Ports
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.inputs import (
    CompactionRequested,
    Input,
    LeadershipGranted,
    LeadershipRevoked,
    MessageReceived,
    Ticked,
)
from quorapay.core.ledger import Delta, Ledger, LedgerState, Result
from quorapay.core.messages import Message
from quorapay.core.node_state import Answer, Effects, NodeState, Read, Work, Write, WriteBatch
from quorapay.core.ready import (
    LeadershipEnded,
    LeaderSilent,
    Outcome,
    Outgoing,
    Persist,
    ProposalAccepted,
    ProposalRejected,
    ReadsConfirmed,
    ReadsRejected,
)
from quorapay.core.replica import Replica, Role
from quorapay.core.timing import Timing
from quorapay.core.types import (
    AccountId,
    Cents,
    Command,
    CreateAccount,
    Epoch,
    LogEntry,
    LogIndex,
    NodeId,
    Transfer,
    TransferId,
)


@dataclass
class Disk:
    promised: Epoch = Epoch(0)
    promised_to: NodeId | None = None
    log: list[LogEntry] = field(default_factory=list)  # the entries after `start`
    start: LogIndex = LogIndex(0)  # compacted up to here
    start_epoch: Epoch = Epoch(0)
    start_ts: Timestamp = ZERO
    base_index: LogIndex = LogIndex(0)  # the installed snapshot's index, and its ledger
    base: LedgerState = field(default_factory=lambda: LedgerState(accounts=(), transfers=()))
    applied: list[LogEntry] = field(default_factory=list)  # entries applied after the base

    @property
    def applied_index(self) -> LogIndex:
        return LogIndex(self.base_index + len(self.applied))


@dataclass
class Node:
    id: NodeId
    state: NodeState[int]
    disk: Disk
    executor: Executor[int] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    results: dict[LogIndex, list[Result]] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)  # NodeState's token -> the harness's
    up: bool = True
    hung: int = 0  # while set, its disk hangs: the writes handed out never land (their count)
    unwritten: list[LogEntry] = field(default_factory=list)  # applied, rows not yet on disk

    @property
    def replica(self) -> Replica:
        return self.state.replica

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger


@dataclass(frozen=True)
class InFlight:
    src: NodeId
    dst: NodeId
    message: Message
    hlc: Timestamp | None = None
    wall_ms: int | None = None


class ReplicaCluster:
    def __init__(self, ids: tuple[str, ...] = ("n1", "n2", "n3"),
                 timing: Timing | None = None, walls: dict[str, int] | None = None) -> None:
        self.ids = tuple(NodeId(i) for i in ids)
        # with walls, each node reads its wall clock (ms) before every batch and messages carry
        # the sender's HLC; tests move the clocks by changing walls[node]
        self.walls = {NodeId(k): v for k, v in walls.items()} if walls is not None else None
        self.timing = timing or Timing()
        self.nodes = {i: self._boot(i, Disk()) for i in self.ids}
        self.network: deque[InFlight] = deque()
        self.cut_links: set[tuple[NodeId, NodeId]] = set()
        self._proposal = 0
        self.dropped = 0
        # index -> an upper bound of the epoch in which it was committed (the promised epoch of
        # the first node to apply it: a leader commits in its epoch, a follower learns of it from
        # a leader of its promised epoch)
        self.commit_epoch: dict[LogIndex, Epoch] = {}

    # ---------------------------------------------------------------- nodes
    def _boot(self, node_id: NodeId, disk: Disk) -> Node:
        replica = Replica(node_id=node_id, members=self.ids, timing=self.timing,
                          promised_epoch=disk.promised, promised_to=disk.promised_to,
                          log=list(disk.log),
                          applied_index=disk.applied_index, snapshot_index=disk.start,
                          snapshot_epoch=disk.start_epoch, snapshot_ts=disk.start_ts)
        ledger = Ledger.from_state(disk.base)
        for entry in disk.applied:
            ledger.apply(entry, Delta())
        node = Node(id=node_id, state=NodeState(replica, ledger), disk=disk)
        node.executor = Executor(node.state, Ports(
            transport=_Network(self, node_id), clients=_Unanswered(),
            coordination=_NoCoordination(), clock=_Wall(self, node_id),
            observer=_Recorder(self, node)))
        return node

    def __getitem__(self, node_id: str) -> Replica:
        return self.nodes[NodeId(node_id)].replica

    def crash(self, node_id: str) -> None:
        """The process dies: memory is lost, the disk stays. Messages to it are lost."""
        node = self.nodes[NodeId(node_id)]
        node.up = False
        self.network = deque(m for m in self.network if m.dst != node.id)

    def restart(self, node_id: str) -> None:
        node = self.nodes[NodeId(node_id)]
        self.nodes[node.id] = self._boot(node.id, node.disk)

    def wipe(self, node_id: str) -> None:
        """The node comes back with an empty data dir (a replaced disk)."""
        self.crash(node_id)
        self.nodes[NodeId(node_id)] = self._boot(NodeId(node_id), Disk())

    def seed_log(self, node_id: str, epochs: list[int], promised: int | None = None) -> None:
        """Give a (down or fresh) node a log of barrier entries with these epochs, for scenarios."""
        from quorapay.core.types import Commands
        disk = Disk(promised=Epoch(promised if promised is not None else max(epochs, default=0)),
                    log=[LogEntry(index=LogIndex(i + 1), epoch=Epoch(e),
                                  payload=Commands(commands=())) for i, e in enumerate(epochs)])
        self.nodes[NodeId(node_id)] = self._boot(NodeId(node_id), disk)

    # ---------------------------------------------------------------- inputs
    def step(self, node_id: str, *events: Input) -> None:
        """Feed one batch of inputs, then carry out its work, as the driver does per batch."""
        node = self.nodes[NodeId(node_id)]
        if not node.up:
            return
        assert node.executor is not None
        node.executor.step(events)
        self._process(node)

    def grant(self, node_id: str, epoch: int) -> None:
        self.step(node_id, LeadershipGranted(epoch=Epoch(epoch)))

    def revoke(self, node_id: str) -> None:
        self.step(node_id, LeadershipRevoked())

    def propose(self, node_id: str, *commands: Command) -> int:
        self._proposal += 1
        node = self.nodes[NodeId(node_id)]
        if node.up:
            (token,) = node.state.submit([Write(key=self._proposal, commands=tuple(commands))])
            node.tokens[token] = self._proposal
            self.step(node_id)
        return self._proposal

    def read(self, node_id: str, count: int = 1) -> list[int]:
        """Request `count` reads in one batch; return their tokens."""
        tokens = list(range(self._proposal + 1, self._proposal + count + 1))
        self._proposal += count
        node = self.nodes[NodeId(node_id)]
        if node.up:
            for token in tokens:
                node.tokens[node.state.read(Read(key=token, query=lambda _: None))] = token
            self.step(node_id)
        return tokens

    def compact(self, node_id: str, upto: int) -> None:
        self.step(node_id, CompactionRequested(upto=LogIndex(upto)))

    def tick(self, n: int = 1, only: tuple[str, ...] | None = None) -> None:
        for _ in range(n):
            for node_id in only or self.ids:
                self.step(node_id, Ticked())

    # ---------------------------------------------------------------- network
    def cut(self, a: str, b: str) -> None:
        self.cut_links |= {(NodeId(a), NodeId(b)), (NodeId(b), NodeId(a))}

    def isolate(self, a: str) -> None:
        for other in self.ids:
            if other != a:
                self.cut(a, other)

    def heal(self) -> None:
        self.cut_links.clear()

    def deliver_one(self, drop: Callable[[InFlight], bool] | None = None) -> InFlight | None:
        if not self.network:
            return None
        msg = self.network.popleft()
        if (msg.src, msg.dst) in self.cut_links or not self.nodes[msg.dst].up or (
                drop is not None and drop(msg)):
            self.dropped += 1
            return msg
        clocked = self.walls is not None
        self.step(msg.dst, MessageReceived(sender=msg.src, message=msg.message,
                                           hlc=msg.hlc if clocked else None,
                                           wall_ms=msg.wall_ms if clocked else None))
        return msg

    def deliver_at(self, position: int) -> None:
        """Deliver the message at `position` (mod the queue length): reordering."""
        if self.network:
            self.network.rotate(-(position % len(self.network)))
            self.deliver_one()

    def duplicate_at(self, position: int) -> None:
        if self.network:
            self.network.append(self.network[position % len(self.network)])

    def deliver_all(self, limit: int = 10_000,
                    drop: Callable[[InFlight], bool] | None = None) -> None:
        """Deliver until the network is empty, losing the messages `drop` selects."""
        for _ in range(limit):
            if self.deliver_one(drop) is None:
                return
        raise AssertionError("network did not quiesce")

    def stabilize(self, ticks: int = 10) -> None:
        """Deliver everything, tick, repeat: enough for heartbeats to spread commit indexes."""
        self.deliver_all()
        for _ in range(ticks):
            self.tick()
            self.deliver_all()

    # ---------------------------------------------------------------- the driver contract
    def _process(self, node: Node) -> None:
        """Carry out all of the node's work, through the production executor."""
        executor = node.executor
        assert executor is not None
        for _ in range(1000):
            batches = executor.pending()
            if not batches:
                return
            if node.hung:
                node.hung += len(batches)
                return
            executor.persisted(len(batches))  # the recorder writes them to the model disk
        raise AssertionError(f"{node.id} still has work after 1000 batches")

    def _write(self, node: Node, work: Work, batch: WriteBatch) -> None:
        """The model disk: the batch lands whole, at once (when the executor says durable)."""
        if batch.persist is not None:
            self._persist(node, batch.persist)
        while batch.applied_index is not None and node.unwritten \
                and node.unwritten[0].index <= batch.applied_index:
            entry = node.unwritten.pop(0)
            if entry.index <= node.disk.base_index:
                continue  # a snapshot installed since holds its effect
            assert entry.index == node.disk.applied_index + 1, "applied out of order"
            node.disk.applied.append(entry)
        if batch.persist is not None and batch.persist.compact_upto is not None:
            self._compact(node, batch.persist)  # last, as the store does

    def _applied(self, node: Node, work: Work) -> None:
        """The node applied these entries in memory (their rows reach the disk later)."""
        for entry, results in work.applied:
            node.results[entry.index] = results
            self.commit_epoch.setdefault(entry.index, node.replica.promised_epoch)
            node.unwritten.append(entry)

    @staticmethod
    def _persist(node: Node, p: Persist) -> None:
        disk = node.disk
        if p.install is not None:
            disk.log, disk.start, disk.start_epoch = [], p.install.index, p.install.last_epoch
            disk.start_ts = p.install.last_ts
            disk.base_index, disk.base, disk.applied = p.install.index, p.install.state, []
        del disk.log[max(0, p.keep_upto - disk.start):]
        disk.log.extend(p.entries)
        if p.promised_epoch is not None:
            disk.promised = p.promised_epoch
            disk.promised_to = p.promised_to

    @staticmethod
    def _compact(node: Node, p: Persist) -> None:
        disk = node.disk
        assert p.compact_upto is not None and p.compact_epoch is not None
        assert p.compact_upto <= disk.applied_index, "compacted entries not yet applied"
        del disk.log[:p.compact_upto - disk.start]
        disk.start, disk.start_epoch = p.compact_upto, p.compact_epoch
        disk.start_ts = p.compact_ts or ZERO

    # ---------------------------------------------------------------- observations
    def leaders(self) -> list[NodeId]:
        return [n.id for n in self.nodes.values() if n.up and n.replica.role is Role.LEADER]

    def accepted(self, node_id: str, proposal: int) -> ProposalAccepted | None:
        for outcome in self.nodes[NodeId(node_id)].outcomes:
            if isinstance(outcome, ProposalAccepted) and outcome.proposal == proposal:
                return outcome
        return None

    def logs(self) -> dict[NodeId, list[tuple[int, int]]]:
        return {i: [(e.index, e.epoch) for e in n.disk.log] for i, n in self.nodes.items()}

    def check_safety(self) -> None:
        """Nodes applied the same entry at every index; durable logs match where epochs match."""
        applied: dict[LogIndex, LogEntry] = {}
        for node in self.nodes.values():
            for entry in node.disk.applied:
                assert applied.setdefault(entry.index, entry) == entry, \
                    f"two nodes applied different entries at {entry.index}"
        logs = [{e.index: e for e in n.disk.log} for n in self.nodes.values()]
        for a in logs:
            for b in logs:
                common = sorted(set(a) & set(b), reverse=True)
                for i in common:
                    if a[i].epoch == b[i].epoch:
                        assert all(a[j] == b[j] for j in common if j <= i), \
                            f"log matching broken at {i}"
                        break


@dataclass(frozen=True, slots=True)
class _Network:
    cluster: ReplicaCluster
    node: NodeId

    def send(self, out: Outgoing) -> None:
        self.cluster.network.append(InFlight(src=self.node, dst=out.to, message=out.message,
                                             hlc=out.hlc, wall_ms=out.wall_ms))


class _Unanswered:
    """Tests read the core's outcomes (the Recorder), not the clients' answers."""

    def answer(self, key: object, answer: Answer) -> None:
        pass


class _NoCoordination:
    def relinquish(self, ended: LeadershipEnded) -> None:
        pass

    def claim(self, epoch: Epoch) -> None:
        pass

    def eligible(self, eligible: bool) -> None:
        pass

    def depose(self, silent: LeaderSilent) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Wall:
    cluster: ReplicaCluster
    node: NodeId

    def wall_ms(self) -> int | None:
        walls = self.cluster.walls
        return None if walls is None else walls[self.node]


class _Recorder(Observer):
    """Writes each batch to the node's model disk as it is reported durable; keeps every
    outcome of the core, with the harness's tokens for its requests."""

    def __init__(self, cluster: ReplicaCluster, node: Node) -> None:
        self._cluster, self._node = cluster, node

    def staged(self, work: Work) -> None:
        self._cluster._applied(self._node, work)

    def durable(self, work: Work) -> None:
        self._cluster._write(self._node, work, work.batch)

    def finished(self, work: Work, effects: Effects[object]) -> None:
        self._node.outcomes.extend(self._translate(o) for o in work.ready.outcomes)

    def _translate(self, outcome: Outcome) -> Outcome:
        tokens = self._node.tokens
        if isinstance(outcome, ProposalAccepted | ProposalRejected):
            return replace(outcome, proposal=tokens.get(outcome.proposal, outcome.proposal))
        if isinstance(outcome, ReadsConfirmed | ReadsRejected):
            return replace(outcome, reads=tuple(tokens.get(t, t) for t in outcome.reads))
        return outcome


class _Nowhere:
    def send(self, out: Outgoing) -> None:
        pass


class _NoWall:
    def wall_ms(self) -> int | None:
        return None


def lone_ports() -> Ports[object]:
    """Ports for a node alone: nothing to send to, nobody to answer, no coordination."""
    return Ports(transport=_Nowhere(), clients=_Unanswered(), coordination=_NoCoordination(),
                 clock=_NoWall())


def led_by_n1(timing: Timing, ids: tuple[str, ...] = ("n1", "n2", "n3")) -> ReplicaCluster:
    """A cluster whose n1 was granted epoch 1 and serves."""
    cluster = ReplicaCluster(ids, timing)
    cluster.grant("n1", 1)
    cluster.stabilize()
    assert cluster["n1"].serving
    return cluster


def account(name: str, *, issuer: bool = False) -> CreateAccount:
    return CreateAccount(id=AccountId(name), currency="USD", allow_negative=issuer)


def transfer(tid: str, debit: str, credit: str, amount: int, *, flags: int = 0) -> Transfer:
    return Transfer(id=TransferId(tid), debit=AccountId(debit), credit=AccountId(credit),
                    amount=Cents(amount), currency="USD", flags=flags)
