"""The one executor of the Ready contract: persist, then send, then apply, then answer.

The node (`quorapay.node.loop`), the simulator (`quorapay.sim.node`) and the tests all carry out
a NodeState's work through this class; each gives it ports -- transport, clients, coordination,
clock, observer (logs, metrics, the simulator's checker) -- and makes its batches durable:

    executor.step(inputs)                      # a batch of inputs, at any time
    for batch in executor.pending():           # stage the work: what claims nothing about
        hand `batch` to the writer             # the disk (a leader's Appends, clock probes,
                                               # answers to committed writes) leaves now
    ...and whenever writes land (the writer keeps their order; several may share one fsync):
    executor.persisted(count)                  # the oldest `count` batches are durable: what
    executor.pending()                         # waited on them is sent and answered

Writes are pipelined: the node goes on stepping inputs -- sending heartbeats, taking requests,
counting acknowledgements -- while earlier batches are being made durable, and a message that
claims durable state waits for the write of its own batch and of every batch before it.

It is synchronous and does no I/O of its own: the caller decides when a write completes (a
trio worker thread, a simulated fsync time, at once), so the simulator drives the same rules the
node runs, step by step, independently of any event loop's scheduling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from quorapay.core.inputs import ClockRead, Input
from quorapay.core.node_state import (
    Answer,
    Effects,
    NodeState,
    Read,
    Work,
    Write,
    WriteBatch,
)
from quorapay.core.ready import LeadershipEnded, LeaderSilent, Outgoing
from quorapay.core.snapshot_stream import ChunkLoaded, ChunkRead
from quorapay.core.types import Epoch, NodeId

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Switchover(Generic[K]):
    """An operator's switchover: hand leadership to `to` (None: the most caught-up follower)."""

    key: K
    to: NodeId | None


ExecutorInput = Input | Write[K] | Read[K] | Switchover[K] | ChunkLoaded


class Transport(Protocol):
    def send(self, outgoing: Outgoing) -> None:
        """Queue a message to a peer without blocking; it may be lost (the protocol resends)."""


class Clients(Protocol[K_contra]):
    def answer(self, key: K_contra, answer: Answer) -> None:
        """Deliver a request's answer (late answers to gone clients are dropped)."""


class Coordination(Protocol):
    def relinquish(self, ended: LeadershipEnded) -> None:
        """Give up the ZooKeeper leadership of `ended.epoch` and rejoin the election."""

    def claim(self, epoch: Epoch) -> None:
        """Claim leadership now: the leader of `epoch` handed it to this node."""

    def eligible(self, eligible: bool) -> None:
        """Stand for election, or stop standing."""

    def depose(self, silent: LeaderSilent) -> None:
        """End the ZooKeeper leadership of `silent.leader` if it still holds `silent.epoch`:
        a majority heard nothing from it, so the next candidate may claim now."""


class SnapshotReads(Protocol):
    def read(self, read: ChunkRead) -> ChunkLoaded | None:
        """Read a part of a snapshot to send: return it now, or None and step it back later
        as an input (the node reads in a worker thread, off its event loop)."""


class ReadAtOnce:
    """Snapshot parts read synchronously, in the caller's thread (tests)."""

    def read(self, read: ChunkRead) -> ChunkLoaded | None:
        return read.load()


class Clock(Protocol):
    def wall_ms(self) -> int | None:
        """This node's wall clock, in ms since the Unix epoch (as it believes); None: no wall
        clock (core tests that leave time out)."""


class Observer:
    """Watches the work go by (logs, metrics, the simulator's checker); does nothing itself."""

    def staged(self, work: Work) -> None:
        """`work` was staged (its batch, if any, goes out for writing); its send-now messages
        leave next."""

    def durable(self, work: Work) -> None:
        """`work.batch` is on disk (before anything else of it is sent or answered)."""

    def finished(self, work: Work, effects: Effects[Any]) -> None:
        """The state advanced past `work`; its effects are about to be carried out."""

    def idle(self) -> None:
        """No work is left for this batch of inputs."""


@dataclass(slots=True, kw_only=True)
class Ports(Generic[K]):
    transport: Transport
    clients: Clients[K]
    coordination: Coordination
    clock: Clock
    observer: Observer = field(default_factory=Observer)
    reads: SnapshotReads = field(default_factory=ReadAtOnce)


class Executor(Generic[K]):
    def __init__(self, state: NodeState[K], ports: Ports[K], *, eligible: bool = True) -> None:
        self.state = state
        self.ports = ports
        self._eligible = eligible  # what coordination was last told
        self._staged: deque[Work] = deque()  # staged, not finished: oldest first
        self._in_flight = 0  # batches handed out by pending(), not yet persisted()
        self._landed = 0  # of those, durable, their Works waiting to finish

    @property
    def in_flight(self) -> int:
        """Batches handed out for writing and not yet reported persisted."""
        return self._in_flight

    def step(self, inputs: Iterable[ExecutorInput[K]]) -> None:
        """Step one batch of inputs; client writes of the whole batch become one log entry."""
        # Read after the batch arrived: a message's arrival is never after this reading.
        wall_ms = self.ports.clock.wall_ms()
        if wall_ms is not None:
            self.state.step(ClockRead(wall_ms=wall_ms))
        writes: list[Write[K]] = []
        for item in inputs:
            if isinstance(item, Write):
                writes.append(item)
            elif isinstance(item, Read):
                self.state.read(item)
            elif isinstance(item, Switchover):
                self.state.switchover(item.key, item.to)
            else:
                self.state.step(item)
        self.state.submit(writes)

    def pending(self) -> list[WriteBatch]:
        """Stage every piece of work there is now and carry out what needs no disk; return
        the batches to make durable, in order (then call persisted() as they land)."""
        batches: list[WriteBatch] = []
        loaded: list[ChunkLoaded] = []
        while (work := self.state.next_work()) is not None or loaded:
            if work is None:  # parts of snapshots read at once: they make more work
                for item in loaded:
                    self.state.step(item)
                loaded = []
                continue
            self._staged.append(work)
            self.ports.observer.staged(work)
            for outgoing in work.ready.messages:
                if self._sends_now(work, outgoing):  # beside the write: claims nothing of disk
                    self.ports.transport.send(outgoing)
            for key, answer in self.state.committed_answers(work):  # beside it too
                self.ports.clients.answer(key, answer)
            for read in work.reads:
                if (result := self.ports.reads.read(read)) is not None:
                    loaded.append(result)
            if not work.batch.empty:
                batches.append(work.batch)
                self._in_flight += 1
            self._finish_durable()  # work that wrote nothing, with no write ahead of it
        self.ports.observer.idle()
        return batches

    def persisted(self, count: int = 1) -> None:
        """The oldest `count` batches pending() returned (and not yet reported) are durable:
        finish the work that waited on them. Call pending() next: there may be more."""
        assert 0 < count <= self._in_flight, "persisted() more batches than are in flight"
        self._in_flight -= count
        self._landed += count
        self._finish_durable()

    def run(self, write: Callable[[WriteBatch], None]) -> None:
        """All the work, writing each batch with `write` (synchronous, durable on return)."""
        while batches := self.pending():
            for batch in batches:
                write(batch)
                self.persisted()
        assert not self._staged, "work left unfinished with no write in flight"

    def _sends_now(self, work: Work, outgoing: Outgoing) -> bool:
        """Whether a message of `work` leaves when it is staged, before any write is durable
        (its own or an earlier one)."""
        return not outgoing.after_persist

    def _finish_durable(self) -> None:
        """Finish, oldest first, every staged Work whose write and earlier ones are durable."""
        while self._staged:
            work = self._staged[0]
            if not work.batch.empty:
                if not self._landed:
                    return
                self._landed -= 1
                self.ports.observer.durable(work)
            self._staged.popleft()
            effects = self.state.finish(work)
            self.ports.observer.finished(work, effects)
            self._carry_out(work, effects)

    def _carry_out(self, work: Work, effects: Effects[K]) -> None:
        for outgoing in effects.messages:
            if not self._sends_now(work, outgoing):  # the others left when the work was staged
                self.ports.transport.send(outgoing)
        for key, answer in effects.answers:
            self.ports.clients.answer(key, answer)
        coordination = self.ports.coordination
        for ended in effects.relinquish:
            coordination.relinquish(ended)
        for epoch in effects.claims:
            coordination.claim(epoch)
        for silent in effects.depose:
            coordination.depose(silent)
        eligible = self.state.replica.eligible
        if eligible != self._eligible:
            self._eligible = eligible
            coordination.eligible(eligible)
