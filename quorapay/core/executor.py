"""The one executor of the Ready contract: persist, then send, then apply, then answer.

The node (`quorapay.node.loop`), the simulator (`quorapay.sim.node`) and the tests all carry out
a NodeState's work through this class; each gives it ports -- transport, clients, coordination,
clock, observer (logs, metrics, the simulator's checker) -- and makes its batches durable:

    executor.step(inputs)                              # one batch of inputs
    while (batch := executor.pending()) is not None:   # a leader's Appends leave now, and
                                                       # the answers to committed writes
        make `batch` durable (one transaction, fsync)  # the storage port: sync or async
        executor.persisted()                           # only now: the rest is sent, answered

It is synchronous and does no I/O of its own: the caller decides when a write completes (a
trio worker thread, a simulated fsync time, at once), so the simulator drives the same rules the
node runs, step by step, independently of any event loop's scheduling.
"""

from __future__ import annotations

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
from quorapay.core.types import Epoch, NodeId

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Switchover(Generic[K]):
    """An operator's switchover: hand leadership to `to` (None: the most caught-up follower)."""

    key: K
    to: NodeId | None


ExecutorInput = Input | Write[K] | Read[K] | Switchover[K]


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


class Clock(Protocol):
    def wall_ms(self) -> int | None:
        """This node's wall clock, in ms since the Unix epoch (as it believes); None: no wall
        clock (core tests that leave time out)."""


class Observer:
    """Watches the work go by (logs, metrics, the simulator's checker); does nothing itself."""

    def writing(self, work: Work) -> None:
        """`work.batch` goes out for writing; its send-now messages leave next."""

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


class Executor(Generic[K]):
    def __init__(self, state: NodeState[K], ports: Ports[K], *, eligible: bool = True) -> None:
        self.state = state
        self.ports = ports
        self._eligible = eligible  # what coordination was last told
        self._work: Work | None = None  # staged, waiting for its batch to be durable

    @property
    def work(self) -> Work | None:
        """The work whose batch is out for writing: none of it happens until persisted()."""
        return self._work

    def step(self, inputs: Iterable[ExecutorInput[K]]) -> None:
        """Step one batch of inputs; client writes of the whole batch become one log entry."""
        assert self._work is None, "step() while a batch is being written"
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

    def pending(self) -> WriteBatch | None:
        """Carry out every piece of work that needs no disk; return the batch that must be
        durable before the next can go on (then call persisted()), or None: all done."""
        assert self._work is None, "pending() before the last batch was persisted()"
        while (work := self.state.next_work()) is not None:
            if not work.batch.empty:
                self._work = work
                self.ports.observer.writing(work)
                for outgoing in work.ready.messages:
                    if self._sends_now(outgoing):  # beside the write: a leader's Appends
                        self.ports.transport.send(outgoing)
                for key, answer in self.state.committed_answers(work):  # beside it too
                    self.ports.clients.answer(key, answer)
                return work.batch
            self._finish(work, sent_early=False)
        self.ports.observer.idle()
        return None

    def persisted(self) -> None:
        """The batch pending() returned is durable (fsync done): finish its work."""
        work, self._work = self._work, None
        assert work is not None, "persisted() without a pending batch"
        self.ports.observer.durable(work)
        self._finish(work, sent_early=True)

    def run(self, write: Callable[[WriteBatch], None]) -> None:
        """All the work, writing each batch with `write` (synchronous, durable on return)."""
        while (batch := self.pending()) is not None:
            write(batch)
            self.persisted()

    def _sends_now(self, outgoing: Outgoing) -> bool:
        """Whether a message of a batch being written leaves before the write is durable."""
        return not outgoing.after_persist

    def _finish(self, work: Work, *, sent_early: bool) -> None:
        effects = self.state.finish(work)
        self.ports.observer.finished(work, effects)
        self._carry_out(effects, sent_early=sent_early)

    def _carry_out(self, effects: Effects[K], *, sent_early: bool) -> None:
        for outgoing in effects.messages:
            if not (sent_early and self._sends_now(outgoing)):
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
