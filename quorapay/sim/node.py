"""A simulated node: the production executor (`quorapay.core.executor`) over the production
store (`quorapay.node.storage`), on a simulated disk, with seeded models around them.

The executor, NodeState, Replica, ledger and Coordinator are the node's own; what the simulator
supplies are the ports -- a network, a model ZooKeeper behind the coordinator, a wall clock --
and the time a write takes to become durable. As in the node, writes are pipelined: inputs are
stepped as they arrive, also while a write is in flight, and the batches staged meanwhile wait
for the writer, which takes all that wait as one transaction (group commit). A crash loses the
write in flight and those waiting and, of what the store wrote but had not fsynced, whatever
the disk model drops (`quorapay.sim.disk`); a restart recovers from the disk alone, through
`Store.load`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorapay.core.compaction import CompactionPolicy
from quorapay.core.coordinator import (
    ClaimRequested,
    CoordinationNotice,
    CoordinationWarning,
    Coordinator,
    DeposeRequested,
    EligibilityChanged,
    EpochSeen,
    Event,
    RelinquishRequested,
    Request,
)
from quorapay.core.executor import Executor, ExecutorInput, Observer, Ports, Switchover
from quorapay.core.inputs import Input, LeadershipGranted, MessageReceived, Ticked
from quorapay.core.ledger import Ledger
from quorapay.core.messages import SnapshotChunk
from quorapay.core.node_state import (
    Answer,
    Effects,
    HandedOver,
    NodeState,
    Read,
    Work,
    Write,
    WriteBatch,
)
from quorapay.core.ready import LeadershipEnded, LeaderSilent, Outgoing
from quorapay.core.replica import Replica, Role
from quorapay.core.snapshot_stream import ChunkLoaded, ChunkRead
from quorapay.core.timing import Timing
from quorapay.core.types import AccountId, Command, Epoch, NodeId, Transfer
from quorapay.node.storage import Restored, StorageError, Store
from quorapay.sim.disk import SimDisk
from quorapay.sim.network import Network
from quorapay.sim.process import Process
from quorapay.sim.world import World
from quorapay.sim.zk_client import SimZkClient
from quorapay.sim.zk_service import SimZooKeeper

if TYPE_CHECKING:
    from quorapay.sim.invariants import Checker

Key = tuple[str, int, int]  # (client, op, attempt): whom to answer
FSYNC = (0.0005, 0.004)  # seconds
LATE_SNAPSHOTS = 0.3  # the share of snapshot parts also delivered again, late
REPLAYED_SNAPSHOTS = 0.3  # the share of whole snapshots sent again, in order, much later
REPLAY_DELAY = (1.0, 10.0)  # seconds (as from a deposed sender still streaming an old one)
PART_READ = (0.0002, 0.003)  # seconds: reading a part of a snapshot (a worker thread)
LATE_SNAPSHOT_DELAY = (0.2, 3.0)  # seconds
WALL_EPOCH_MS = 1_800_000_000_000  # the wall clocks' reading at simulated time 0 (in 2027)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """The code a simulated node runs. Tests plant bugs here (canaries); runs use the default."""

    replica: type[Replica] = Replica
    ledger: type[Ledger] = Ledger
    executor: type[Executor[Key]] = Executor
    store: type[Store] = Store


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRequest:
    """A client's request as it reaches a node: a write (commands) or a read (of accounts)."""

    client: str
    op: int
    attempt: int
    commands: tuple[Command, ...] | None = None
    accounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverOrder:
    """An operator's switchover, as it reaches a node: hand leadership to `to` (or the most
    caught-up follower). Its answer is not awaited by anyone."""

    to: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    timing: Timing
    tick: float
    session_timeout: float
    compaction: CompactionPolicy | None = None


class SimNode:
    def __init__(self, world: World, network: Network, zookeeper: SimZooKeeper, node_id: NodeId,
                 members: tuple[NodeId, ...], setting: Setting, variant: Variant,
                 checker: Checker) -> None:
        self.id = node_id
        self.process = Process(world, node_id)
        self.disk = SimDisk(node_id)
        self.rate = 1.0  # clock drift: ticks come every tick / rate simulated seconds
        self.wall_offset_ms = 0  # clock skew: this node's wall clock minus the true time
        self.fsync = FSYNC
        self.peers: dict[NodeId, SimNode] = {}
        self.clients: dict[str, Callable[..., None]] = {}  # client -> its answer handler
        self._world, self._network, self._zookeeper = world, network, zookeeper
        self._members, self._setting, self._variant = members, setting, variant
        self._checker = checker
        self.state: NodeState[Key] | None = None
        self.store: Store | None = None
        self.writing = False  # a write is in flight (a crash now loses it)
        self._unwritten: list[WriteBatch] = []  # staged, waiting for the writer
        self.watchers: list[Callable[[SimNode], None]] = []  # staged faults: after each Work
        self.lose: Callable[[Outgoing], bool] | None = None  # staged faults: messages to lose
        # the parts of each snapshot stream sent, by (receiver, epoch, index): for replays
        self.parts_sent: dict[tuple[NodeId, int, int], dict[int, MessageReceived]] = {}
        self.crash_after_write: int | None = None  # armed: effects let out after the next write
        self._effects_left: int | None = None  # counting down, once that write is durable

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Start a process on the node's disk. One that cannot recover is a finding (it stays
        down)."""
        self.process.start()
        try:
            self._boot()
        except Exception as exc:
            self._checker.violation("nodes recover from their disk",
                                    f"{self.id}: {type(exc).__name__}: {exc}")
            self.crash()

    def _boot(self) -> None:
        self.store = self.open_store()
        restored = self.store.load()
        ledger = self._variant.ledger(restored.ledger.accounts.values(),
                                      store=restored.ledger.store,
                                      stored_upto=restored.applied_index,
                                      expiring=restored.ledger.expiring())
        replica = self._variant.replica(
            node_id=self.id, members=self._members, timing=self._setting.timing,
            promised_epoch=restored.promised_epoch, promised_to=restored.promised_to,
            log=restored.log, applied_index=restored.applied_index,
            snapshot_index=restored.snapshot_index, snapshot_epoch=restored.snapshot_epoch,
            snapshot_ts=restored.snapshot_ts)
        self.state = NodeState(replica, ledger, compaction=self._setting.compaction)
        self.coordinator = Coordinator(cluster="sim", node=self.id, peer_url=f"sim://{self.id}",
                                       client_url=f"sim://{self.id}", members=self._members)
        self.executor = self._variant.executor(self.state, Ports(
            transport=_Transport(self), clients=_Clients(self),
            coordination=_Coordination(self), clock=_Clock(self),
            observer=_Checked(self, self._checker), reads=_Reads(self)))
        self.zk = SimZkClient(self._world, self._network, self._zookeeper, self.process,
                              self._setting.session_timeout, self._guarded(self._on_zk_event))
        self._inbox: list[Any] = []
        self.writing = False
        self._unwritten = []
        self._scheduled = False
        self._checker.started(self, restored)
        self.zk.start()
        self.process.schedule(self._setting.tick / self.rate, self._tick)

    def open_store(self) -> Store:
        """The node's store on its simulated disk, as a new process opens it."""
        return self._variant.store(Path(f"/{self.id}/node.db"), cluster="sim",
                                   node_id=self.id, connect=self.disk.connect, lock=False)

    def recovered(self) -> Restored:
        """What the node's store loads from its disk now (the node is up)."""
        assert self.store is not None, f"{self.id} is down"
        return self.store.load()

    def shut_down(self) -> None:
        """The simulation is over: close the store and let go of the disk's VFS."""
        self.disk.retire()
        if self.store is not None:
            self.store.close()
        self.disk.close()

    def crash(self) -> None:
        """The process dies: memory, the batch being written and unsynced writes are lost."""
        if self.writing:
            self._checker.reached("crash while writing")
        self.process.crash()
        self.disk.crash(self._world.rng)
        self.state, self.store, self.writing = None, None, False
        self._unwritten = []
        self.crash_after_write = self._effects_left = None
        self.lose = None
        self.parts_sent = {}

    @property
    def up(self) -> bool:
        return self.process.up

    def deliver(self, item: Any) -> None:
        """A message for this node (through `process.call`): queue it for the next batch."""
        self._inbox.append(item)
        self._wake()

    def wall_ms(self) -> int:
        """What this node's wall clock reads now."""
        return WALL_EPOCH_MS + round(self._world.now * 1000) + self.wall_offset_ms

    def send_to(self, node: SimNode, item: Any) -> None:
        self._network.send(self.id, node.id, node.process.call, node.process.incarnation,
                           node.deliver, item)

    # ------------------------------------------------------------------ the driver loop

    def _guarded(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Run fn; any exception is a crash of this node, and a finding of the simulation."""
        def run(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self._checker.node_failed(self, exc)
                self.crash()
        return run

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.process.schedule(0, self._guarded(self._step_batch))

    def _tick(self) -> None:
        self.deliver(Ticked())
        self.process.schedule(self._setting.tick / self.rate, self._tick)

    def _step_batch(self) -> None:
        self._scheduled = False
        batch, self._inbox = self._inbox, []
        if self._world.rng.random() < 0.5:
            # What arrived together has no order between connections: a real node's channel
            # may hold its clients' requests ahead of its peers' messages (after a pause, say).
            batch.sort(key=lambda item: not isinstance(item, ClientRequest))
        for item in batch:
            self._observe(item)
        self.executor.step([_executor_input(item) for item in batch])
        self._continue()

    def _observe(self, item: Any) -> None:
        """Count the hard states an input brings this node into (the checker's coverage)."""
        replica = self._state().replica
        if isinstance(item, ClientRequest):
            if item.commands is None and replica.role is Role.LEADER \
                    and replica.epoch < self._checker.highest_granted:
                self._checker.reached("read at a deposed leader")
            if item.attempt > 1:
                for command in item.commands or ():
                    if isinstance(command, Transfer):
                        self._checker.retried(self, command.id)
        elif isinstance(item, MessageReceived) and isinstance(item.message, SnapshotChunk) \
                and item.message.index <= replica.commit_index:
            self._checker.reached("late snapshot")

    def _continue(self) -> None:
        """Stage the work there is; start a write if the writer is free and batches wait."""
        self._unwritten += self.executor.pending()
        if self.writing or not self._unwritten:
            return
        batches, self._unwritten = self._unwritten, []
        self.writing = True
        low, high = self.fsync
        self.process.schedule(self._world.rng.uniform(low, high),
                              self._guarded(self._durable), batches)

    def _durable(self, batches: list[WriteBatch]) -> None:
        """The fsync time has passed: the store writes the batches (one transaction)."""
        assert self.store is not None
        injected = self.disk.injected
        try:
            self.store.write_many(batches)
        except StorageError as exc:
            self._storage_failed(exc, batches, injected=self.disk.injected > injected)
            return
        if self.disk.died:  # it died where SQLite ignores errors: the write never finished
            self._storage_failed(StorageError("the process died inside a write"), batches,
                                 injected=True)
            return
        if self.crash_after_write is not None:  # a crash point between the Ready's steps
            self._effects_left, self.crash_after_write = self.crash_after_write, None
        self.writing = False
        self.executor.persisted(len(batches))
        if self._effects_left is not None:
            self._effects_left = None
            self._checker.reached("crash between the steps of a Ready")
            self.crash()
            return
        self._continue()

    def _storage_failed(self, exc: StorageError, batches: list[WriteBatch], *, injected: bool
                        ) -> None:
        """A write failed: an injected disk fault stops the node (it never retries); any other
        failure is a finding (a constraint the database enforces, broken)."""
        if not injected:
            name = ("no transfer applied twice" if "UNIQUE" in str(exc)
                    else "storage writes succeed")
            self._checker.violation(name, f"{self.id}: {exc}")
        self._checker.storage_stopped(self, batches)
        self._checker.reached("storage fault")
        self.crash()

    @property
    def silenced(self) -> bool:
        """Past an armed crash point: nothing more leaves this process."""
        return self._effects_left == 0

    def let_out(self) -> bool:
        """May an effect (a message, an answer) leave? Not past an armed crash point."""
        if self._effects_left is None:
            return True
        if self._effects_left == 0:
            return False
        self._effects_left -= 1
        return True

    def _answer(self, client: str, op: int, attempt: int, answer: Answer) -> None:
        handler = self.clients.get(client)
        if handler is None:
            return  # the operator's switchover: nobody waits for its answer
        self._network.send(self.id, client, handler, op, attempt, self.id, answer)

    # ------------------------------------------------------------------ coordination

    def _on_zk_event(self, event: Event) -> None:
        self.coordinator.step(EpochSeen(epoch=self._state().replica.highest_epoch_seen))
        for output in self.coordinator.step(event):
            if isinstance(output, Request):
                self.zk.request(output)
            elif isinstance(output, CoordinationWarning):  # nothing in the model is garbage
                self._checker.violation("coordination finds what it wrote",
                                        f"{self.id}: {output.message}")
            elif isinstance(output, CoordinationNotice):  # a silent leader deposed
                self._checker.reached("silent leader deposed")
            else:
                if isinstance(output, LeadershipGranted):
                    self._checker.granted(self, output.epoch)
                self.deliver(output)

    def _state(self) -> NodeState[Key]:
        assert self.state is not None, f"{self.id} is down"
        return self.state


def _executor_input(item: Any) -> ExecutorInput[Key]:
    if isinstance(item, ClientRequest):
        key = (item.client, item.op, item.attempt)
        if item.commands is not None:
            return Write(key=key, commands=item.commands)
        return Read(key=key, query=_balances(item.accounts))
    if isinstance(item, SwitchoverOrder):
        return Switchover(key=("operator", 0, 0), to=item.to)
    assert isinstance(item, Input | ChunkLoaded)
    return item


@dataclass(frozen=True, slots=True)
class _Transport:
    node: SimNode

    def send(self, outgoing: Outgoing) -> None:
        node = self.node
        if not node.let_out():
            return
        node._checker.sent(node, outgoing)
        if node.lose is not None and node.lose(outgoing):
            return
        received = MessageReceived(sender=node.id, message=outgoing.message, hlc=outgoing.hlc,
                                   wall_ms=outgoing.wall_ms)
        peer = node.peers[outgoing.to]
        node.send_to(peer, received)
        rng = node._world.rng
        if isinstance(outgoing.message, SnapshotChunk):
            if rng.random() < LATE_SNAPSHOTS:
                # a copy that arrives late: a retransmission overtaken by newer traffic
                node._world.at(rng.uniform(*LATE_SNAPSHOT_DELAY), node.send_to, peer, received)
            self._replay_later(outgoing.to, outgoing.message, received)

    def _replay_later(self, to: NodeId, part: SnapshotChunk, received: MessageReceived) -> None:
        """Keep a stream's parts; once its last is sent, maybe send them all again, in order,
        much later: a whole stale snapshot, arriving below its receiver's commit index (as from
        a deposed sender still streaming an old one)."""
        node = self.node
        key = (to, part.epoch, part.index)
        parts = node.parts_sent.setdefault(key, {})
        parts[part.seq] = received
        if not part.last:
            return
        del node.parts_sent[key]
        rng = node._world.rng
        if len(parts) != part.seq + 1 or rng.random() >= REPLAYED_SNAPSHOTS:
            return
        at = rng.uniform(*REPLAY_DELAY)
        for seq in range(part.seq + 1):
            node._world.at(at + seq * 0.001, node.send_to, node.peers[to], parts[seq])


@dataclass(frozen=True, slots=True)
class _Reads:
    """A part of a snapshot is read a little later, as a worker thread would, and stepped
    back as an input (unless the process died meanwhile)."""

    node: SimNode

    def read(self, read: ChunkRead) -> ChunkLoaded | None:
        node = self.node
        node.process.schedule(node._world.rng.uniform(*PART_READ),
                              node._guarded(self._load), read)
        return None

    def _load(self, read: ChunkRead) -> None:
        self.node.deliver(read.load())


@dataclass(frozen=True, slots=True)
class _Clients:
    node: SimNode

    def answer(self, key: Key, answer: Answer) -> None:
        if not self.node.let_out():
            return
        if isinstance(answer, HandedOver):
            self.node._checker.handed_over(answer.to, answer.epoch)
        self.node._answer(*key, answer)


@dataclass(frozen=True, slots=True)
class _Coordination:
    node: SimNode

    def relinquish(self, ended: LeadershipEnded) -> None:
        if not self.node.silenced:
            self.node._on_zk_event(RelinquishRequested(epoch=ended.epoch,
                                                       handover_to=ended.handover_to))

    def claim(self, epoch: Epoch) -> None:
        if not self.node.silenced:
            self.node._on_zk_event(ClaimRequested(epoch=epoch))

    def depose(self, silent: LeaderSilent) -> None:
        if not self.node.silenced:
            self.node._on_zk_event(DeposeRequested(epoch=silent.epoch, node=silent.leader,
                                                   agreeing=silent.agreeing))

    def eligible(self, eligible: bool) -> None:
        if self.node.silenced:
            return
        if eligible != self.node.coordinator.eligible:  # stand for election again, or not
            self.node._on_zk_event(EligibilityChanged(eligible=eligible))


@dataclass(frozen=True, slots=True)
class _Clock:
    node: SimNode

    def wall_ms(self) -> int:
        return self.node.wall_ms()


class _Checked(Observer):
    """The simulator's checker watches every batch reach the disk and every state advance."""

    def __init__(self, node: SimNode, checker: Checker) -> None:
        self._node, self._checker = node, checker
        self._streams = (0, 0, 0)  # snapshots resumed, started over, replaced halfway

    def staged(self, work: Work) -> None:
        self._checker.staged(self._node, work)
        self._watch()  # before its send-now messages (a leader's Appends) leave

    def durable(self, work: Work) -> None:
        self._checker.durable(self._node, work)

    def finished(self, work: Work, effects: Effects[Any]) -> None:
        if work.batch.empty:
            self._checker.unwritten(self._node)
        self._checker.finished(self._node)
        for problem in effects.peer_problems:
            self._checker.violation("peers follow the protocol",
                                    f"{self._node.id}: {problem.peer} {problem.detail}")
        self._count_streams()
        self._watch()  # before the effects are carried out

    def _count_streams(self) -> None:
        state = self._node.state
        assert state is not None
        now = (state.sending.resumed, state.sending.restarted, state.receiving.replaced)
        for name, before, after in zip(("snapshot resumed", "snapshot started over",
                                        "snapshot replaced halfway"), self._streams, now,
                                       strict=True):
            if after > before:
                self._checker.reached(name)
        self._streams = now

    def _watch(self) -> None:
        for watcher in list(self._node.watchers):
            watcher(self._node)


def _balances(accounts: tuple[str, ...]) -> Callable[[Ledger], dict[str, int]]:
    def query(ledger: Ledger) -> dict[str, int]:
        return {a: ledger.accounts[AccountId(a)].balance for a in accounts
                if AccountId(a) in ledger.accounts}
    return query
