"""The driver loop of one node: batches inputs into its NodeState and carries out the work.

Each iteration takes every input that is waiting (up to a bound) and steps them together --
client writes of the whole batch become one log entry -- and then, for each piece of work:
makes its batch durable in one SQLite transaction (one fsync for the whole batch), only then
sends its messages, then answers clients. The decisions are all `quorapay.core.node_state`;
this module only does the I/O, in the order the Ready contract demands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import trio

from quorapay.core.inputs import ClockRead, Input, LeadershipGranted
from quorapay.core.ledger import Ledger
from quorapay.core.node_state import (
    Answer,
    Committed,
    ErrorCode,
    Failure,
    HandedOver,
    NodeState,
    Read,
    ReadValue,
    Write,
)
from quorapay.core.ready import LeadershipEnded, Outgoing
from quorapay.core.replica import Replica
from quorapay.core.types import Command, Epoch, LogIndex, NodeId
from quorapay.logs.quiet import QuietLog
from quorapay.node.roles import RoleLog
from quorapay.node.storage import Store

__all__ = ["ClientRead", "ClientSwitchover", "ClientWrite", "Committed", "Driver", "DriverInput",
           "Failure", "HandedOver", "LocalQuery", "ReadValue", "Reply"]

log = logging.getLogger(__name__)

MAX_INPUTS_PER_BATCH = 1024
T = TypeVar("T")


class Reply(Generic[T]):
    """A one-shot answer from the driver to the task serving a client. Late answers are dropped."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: T | None = None

    def set(self, value: T) -> None:
        if not self._done.is_set():
            self._value = value
            self._done.set()

    async def wait(self) -> T:
        await self._done.wait()
        return self._value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientWrite:
    commands: tuple[Command, ...]
    reply: Reply[Committed | Failure]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRead:
    """A linearizable read: `query` runs on the ledger once leadership is confirmed."""

    query: Callable[[Ledger], Any]
    reply: Reply[ReadValue | Failure]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSwitchover:
    """An operator's switchover: hand leadership to `to` (None: the most caught-up follower)."""

    to: NodeId | None
    reply: Reply[HandedOver | Failure]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalQuery:
    """A question about this node's own state, answered between batches (a consistent view)."""

    query: Callable[[Driver], Any]
    reply: Reply[Any]


DriverInput = Input | ClientWrite | ClientRead | ClientSwitchover | LocalQuery


class Driver:
    def __init__(self, state: NodeState[Reply[Any]], store: Store,
                 send: Callable[[Outgoing], None],
                 relinquish: Callable[[LeadershipEnded], None],
                 wall_clock: Callable[[], int],
                 eligible: Callable[[bool], None] = lambda _: None,
                 claim: Callable[[Epoch], None] = lambda _: None,
                 roles: RoleLog | None = None) -> None:
        self.state = state
        self.store = store
        self._wall_clock = wall_clock  # ms since the Unix epoch, as this node believes
        self._eligible = eligible  # tell coordination whether to stand for election
        self._eligible_now = True
        self._send = send  # non-blocking; may drop (the protocol retransmits)
        self._relinquish = relinquish  # give up the ZooKeeper leadership of an epoch
        self._claim = claim  # claim ZooKeeper leadership now: it was handed to this node
        self._quiet = QuietLog(log)  # a misbehaving peer could flood the log; a clock can flap
        self._roles = roles if roles is not None else RoleLog(tick_seconds=0.05)

    @property
    def replica(self) -> Replica:
        return self.state.replica

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    @property
    def applied_index(self) -> LogIndex:
        return self.state.applied_index

    async def run(self, inputs: trio.MemoryReceiveChannel[DriverInput]) -> None:
        """Serve inputs until the channel closes. Every batch ends with no work outstanding."""
        async with inputs:
            async for first in inputs:
                batch = [first]
                while len(batch) < MAX_INPUTS_PER_BATCH:
                    try:
                        batch.append(inputs.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                self.step_batch(batch)
                await self.drain()

    def step_batch(self, batch: list[DriverInput]) -> None:
        # Read after the batch arrived: a message's arrival is never after this reading.
        self.state.step(ClockRead(wall_ms=self._wall_clock()))
        writes: list[Write[Reply[Any]]] = []
        for item in batch:
            match item:
                case ClientWrite(commands=commands, reply=reply):
                    writes.append(Write(key=reply, commands=commands))
                case ClientRead(query=query, reply=reply):
                    self.state.read(Read(key=reply, query=query))
                case ClientSwitchover(to=to, reply=reply):
                    self.state.switchover(reply, to)
                case LocalQuery(query=query, reply=reply):
                    reply.set(_answer(partial(query, self)))
                case LeadershipGranted():
                    self._roles.granted(item)
                    self.state.step(item)
                case _:
                    self.state.step(item)
        self.state.submit(writes)

    async def drain(self) -> None:
        """Persist, then send, then answer: the Ready contract, for every piece of work."""
        self._quiet.flush()
        while (work := self.state.next_work()) is not None:
            if not work.batch.empty:
                await self.store.write_async(work.batch)  # durable (fsync) BEFORE any send
            effects = self.state.finish(work)
            for outgoing in effects.messages:
                self._send(outgoing)
            for reply, answer in effects.answers:
                _log_internal(answer)
                reply.set(answer)
            for warning in effects.clock_warnings:
                self._quiet.state(f"clock {warning.subject}",
                                  logging.WARNING if warning.alarm else logging.INFO,
                                  "%s", warning.message)
            for problem in effects.peer_problems:
                self._quiet.warning(f"peer-{problem.peer}", "dropped a message from %s: %s",
                                    problem.peer, problem.detail)
            for ended in effects.ended:
                self._roles.ended(ended)
            for ended in effects.relinquish:
                self._relinquish(ended)
            for epoch in effects.claims:
                log.info("the leader of epoch %d hands leadership to this node: claiming it",
                         epoch)
                self._claim(epoch)
            self._roles.observe(self.replica)
            if self.replica.eligible != self._eligible_now:
                self._eligible_now = self.replica.eligible
                self._eligible(self._eligible_now)
        self._roles.observe(self.replica)  # changes without work (ZooKeeper suspended, resumed)


def _answer(query: Callable[[], T]) -> T | Failure:
    """Run a read-only query for a client. A bug in one query fails that request, not the node."""
    try:
        return query()
    except Exception:
        log.exception("internal error answering a query")
        return Failure(code=ErrorCode.INTERNAL, message="internal error; the node logged it")


def _log_internal(answer: Answer) -> None:
    if isinstance(answer, Failure) and answer.code is ErrorCode.INTERNAL:
        log.error("internal error answering a client: %s", answer.message)
