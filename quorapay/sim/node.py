"""A simulated node: the real NodeState (replica, ledger, pending requests) and the real
Coordinator, driven the way `quorapay.node.loop.Driver` drives them.

Inputs that arrive while the node works are queued and stepped together as the next batch. Each
piece of work is made durable on the simulated disk, which takes a random fsync time; only then
are its messages sent and its clients answered. A crash loses the work whose fsync had not
completed, and everything in memory; a restart recovers from the disk alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quorapay.core.compaction import CompactionPolicy
from quorapay.core.coordinator import (
    ClaimRequested,
    CoordinationWarning,
    Coordinator,
    EligibilityChanged,
    EpochSeen,
    Event,
    RelinquishRequested,
    Request,
)
from quorapay.core.inputs import ClockRead, Input, LeadershipGranted, MessageReceived, Ticked
from quorapay.core.ledger import Ledger
from quorapay.core.node_state import Answer, HandedOver, NodeState, Read, Work, Write
from quorapay.core.ready import Outgoing
from quorapay.core.replica import Replica
from quorapay.core.timing import Timing
from quorapay.core.types import AccountId, Command, NodeId
from quorapay.sim.disk import IntegrityError, SimDisk
from quorapay.sim.network import Network
from quorapay.sim.process import Process
from quorapay.sim.world import World
from quorapay.sim.zk_client import SimZkClient
from quorapay.sim.zk_service import SimZooKeeper

if TYPE_CHECKING:
    from quorapay.sim.invariants import Checker

FSYNC = (0.0005, 0.004)  # seconds
WALL_EPOCH_MS = 1_800_000_000_000  # the wall clocks' reading at simulated time 0 (in 2027)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """The code a simulated node runs. Tests plant bugs here (canaries); runs use the default."""

    replica: type[Replica] = Replica
    ledger: type[Ledger] = Ledger
    send_before_durable: bool = False  # a driver bug: acknowledge before fsync


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
        self.disk = SimDisk()
        self.rate = 1.0  # clock drift: ticks come every tick / rate simulated seconds
        self.wall_offset_ms = 0  # clock skew: this node's wall clock minus the true time
        self.fsync = FSYNC
        self.peers: dict[NodeId, SimNode] = {}
        self.clients: dict[str, Callable[..., None]] = {}  # client -> its answer handler
        self._world, self._network, self._zookeeper = world, network, zookeeper
        self._members, self._setting, self._variant = members, setting, variant
        self._checker = checker
        self.state: NodeState[tuple[str, int, int]] | None = None

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self.process.start()
        restored = self.disk.ledger()
        ledger = self._variant.ledger(restored.accounts.values(), restored.transfers.values())
        replica = self._variant.replica(
            node_id=self.id, members=self._members, timing=self._setting.timing,
            promised_epoch=self.disk.promised, promised_to=self.disk.promised_to,
            log=list(self.disk.log),
            applied_index=self.disk.applied_index, snapshot_index=self.disk.log_start,
            snapshot_epoch=self.disk.log_start_epoch, snapshot_ts=self.disk.log_start_ts)
        self.state = NodeState(replica, ledger, compaction=self._setting.compaction)
        self.coordinator = Coordinator(cluster="sim", node=self.id, peer_url=f"sim://{self.id}",
                                       client_url=f"sim://{self.id}", members=self._members)
        self.zk = SimZkClient(self._world, self._network, self._zookeeper, self.process,
                              self._setting.session_timeout, self._guarded(self._on_zk_event))
        self._inbox: list[Any] = []
        self._busy = False
        self._scheduled = False
        self._checker.started(self)
        self.zk.start()
        self.process.schedule(self._setting.tick / self.rate, self._tick)

    def crash(self) -> None:
        self.process.crash()
        self.state = None

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
        if not self._busy and not self._scheduled:
            self._scheduled = True
            self.process.schedule(0, self._guarded(self._step_batch))

    def _tick(self) -> None:
        self.deliver(Ticked())
        self.process.schedule(self._setting.tick / self.rate, self._tick)

    def _step_batch(self) -> None:
        self._scheduled = False
        if self._busy:
            return
        state = self._state()
        batch, self._inbox = self._inbox, []
        state.step(ClockRead(wall_ms=self.wall_ms()))
        writes: list[Write[tuple[str, int, int]]] = []
        for item in batch:
            if isinstance(item, ClientRequest):
                key = (item.client, item.op, item.attempt)
                if item.commands is not None:
                    writes.append(Write(key=key, commands=item.commands))
                else:
                    state.read(Read(key=key, query=_balances(item.accounts)))
            elif isinstance(item, SwitchoverOrder):
                state.switchover(("operator", 0, 0), item.to)
            else:
                state.step(item)
        state.submit(writes)
        self._continue()

    def _continue(self) -> None:
        state = self._state()
        while (work := state.next_work()) is not None:
            if not work.batch.empty:
                self._busy = True
                if self._variant.send_before_durable:
                    self._send(work.ready.messages)
                low, high = self.fsync
                self.process.schedule(self._world.rng.uniform(low, high),
                                      self._guarded(self._durable), work)
                return
            self._finish(work)
        self._busy = False
        if self._inbox:
            self._wake()

    def _durable(self, work: Work) -> None:
        try:
            self.disk.write(work.batch)
        except IntegrityError as exc:
            self._checker.violation("no transfer applied twice", f"{self.id}: {exc}")
            self.crash()
            return
        self._checker.durable(self, work)
        self._finish(work)
        self._continue()

    def _finish(self, work: Work) -> None:
        state = self._state()
        effects = state.finish(work)
        self._checker.finished(self)
        early = 0 if work.batch.empty or not self._variant.send_before_durable \
            else len(work.ready.messages)
        self._send(effects.messages[early:])  # snapshots are made only now, whatever the bug
        for (client, op, attempt), answer in effects.answers:
            if isinstance(answer, HandedOver):
                self._checker.handed_over(answer.to, answer.epoch)
            self._answer(client, op, attempt, answer)
        for problem in effects.peer_problems:
            self._checker.violation("peers follow the protocol",
                                    f"{self.id}: {problem.peer} {problem.detail}")
        for ended in effects.relinquish:
            self._on_zk_event(RelinquishRequested(epoch=ended.epoch,
                                                  handover_to=ended.handover_to))
        for epoch in effects.claims:
            self._on_zk_event(ClaimRequested(epoch=epoch))
        eligible = self._state().replica.eligible
        if eligible != self.coordinator.eligible:  # stand for election again, or not
            self._on_zk_event(EligibilityChanged(eligible=eligible))

    def _send(self, messages: tuple[Outgoing, ...]) -> None:
        for outgoing in messages:
            self.send_to(self.peers[outgoing.to],
                         MessageReceived(sender=self.id, message=outgoing.message,
                                         hlc=outgoing.hlc, wall_ms=outgoing.wall_ms))

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
            else:
                if isinstance(output, LeadershipGranted):
                    self._checker.granted(self.id, output.epoch)
                self._queue_input(output)

    def _queue_input(self, event: Input) -> None:
        self.deliver(event)

    def _state(self) -> NodeState[tuple[str, int, int]]:
        assert self.state is not None, f"{self.id} is down"
        return self.state


def _balances(accounts: tuple[str, ...]) -> Callable[[Ledger], dict[str, int]]:
    def query(ledger: Ledger) -> dict[str, int]:
        return {a: ledger.accounts[AccountId(a)].balance for a in accounts
                if AccountId(a) in ledger.accounts}
    return query
