"""The driver loop of one node: batches inputs into the replica and carries out its Readies.

Each iteration takes every input that is waiting (up to a bound), steps the replica with all of
them -- client writes of the whole batch become one log entry -- and then handles Readies until
none is left. `handle_ready` is the one place that honours the Ready contract: apply the
committed entries to the in-memory ledger, write log + promise + ledger rows + applied index in
one SQLite transaction (one fsync for the whole batch), only then send, then answer clients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import trio

from quorapay.api.schema import ErrorCode
from quorapay.core.inputs import CommandsProposed, Input, ReadRequested
from quorapay.core.ledger import Delta, Ledger, Result
from quorapay.core.ready import (
    LeadershipEnded,
    Outgoing,
    ProposalAccepted,
    ProposalRejected,
    ReadsConfirmed,
    ReadsRejected,
    Ready,
    Unavailable,
)
from quorapay.core.replica import Replica
from quorapay.core.types import Command, Epoch, LogEntry, LogIndex, NodeId
from quorapay.node.storage import Store, WriteBatch

log = logging.getLogger(__name__)

MAX_INPUTS_PER_BATCH = 1024
MAX_COMMANDS_PER_ENTRY = 2000
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
class Failure:
    """A request that got no ledger outcome: unavailable, not leader, or unknown (TIMEOUT)."""

    code: ErrorCode
    message: str
    leader: NodeId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    """A client write's outcome: the entry that carried it and one result per command."""

    index: LogIndex
    results: list[Result]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientWrite:
    commands: tuple[Command, ...]
    reply: Reply[Committed | Failure]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadResult:
    index: LogIndex
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRead:
    """A linearizable read: `query` runs on the ledger once leadership is confirmed."""

    query: Callable[[Ledger], Any]
    reply: Reply[ReadResult | Failure]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalQuery:
    """A question about this node's own state, answered between batches (a consistent view)."""

    query: Callable[[Driver], Any]
    reply: Reply[Any]


DriverInput = Input | ClientWrite | ClientRead | LocalQuery

_UNAVAILABLE_CODES = {
    Unavailable.NOT_LEADER: ErrorCode.NOT_LEADER,
    Unavailable.RECOVERING: ErrorCode.UNAVAILABLE,
    Unavailable.SUSPENDED: ErrorCode.UNAVAILABLE,
    Unavailable.NO_QUORUM: ErrorCode.UNAVAILABLE,
}
_UNAVAILABLE_TEXT = {
    Unavailable.NOT_LEADER: "this node is not the leader",
    Unavailable.RECOVERING: "a new leader is taking over and has not yet reached a majority "
                            "of nodes to recover the log",
    Unavailable.SUSPENDED: "the leader lost its ZooKeeper connection; writes are paused",
    Unavailable.NO_QUORUM: "no quorum of nodes is reachable",
}


def unavailable(reason: Unavailable, leader: NodeId | None) -> Failure:
    return Failure(code=_UNAVAILABLE_CODES[reason], message=_UNAVAILABLE_TEXT[reason],
                   leader=leader)


@dataclass(frozen=True, slots=True)
class _Part:
    """Commands[offset : offset + count] of an entry belong to this client write."""

    write: ClientWrite
    offset: int
    count: int


@dataclass(slots=True)
class Driver:
    replica: Replica
    ledger: Ledger
    store: Store
    send: Callable[[Outgoing], None]  # non-blocking; may drop (the protocol retransmits)
    relinquish: Callable[[Epoch, str], None]  # give up the ZooKeeper leadership of an epoch
    applied_index: LogIndex = LogIndex(0)
    _next_token: int = 0
    _proposed: dict[int, list[_Part]] = field(default_factory=dict)
    _awaiting: dict[LogIndex, tuple[Epoch, list[_Part]]] = field(default_factory=dict)
    _reads: dict[int, ClientRead] = field(default_factory=dict)
    _held_reads: list[tuple[LogIndex, list[ClientRead]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.applied_index = self.replica.applied_index

    async def run(self, inputs: trio.MemoryReceiveChannel[DriverInput]) -> None:
        """Serve inputs until the channel closes. Every batch ends with no Ready outstanding."""
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
        writes: list[ClientWrite] = []
        for item in batch:
            match item:
                case ClientWrite():
                    writes.append(item)
                case ClientRead():
                    self._next_token += 1
                    self._reads[self._next_token] = item
                    self.replica.step(ReadRequested(read=self._next_token))
                case LocalQuery(query=query, reply=reply):
                    reply.set(_answer(partial(query, self)))
                case _:
                    self.replica.step(item)
        self._propose(writes)

    def _propose(self, writes: list[ClientWrite]) -> None:
        """Turn client writes into as few entries as the size bound allows."""
        commands: list[Command] = []
        parts: list[_Part] = []
        for write in writes:
            if commands and len(commands) + len(write.commands) > MAX_COMMANDS_PER_ENTRY:
                self._propose_entry(commands, parts)
                commands, parts = [], []
            parts.append(_Part(write, len(commands), len(write.commands)))
            commands.extend(write.commands)
        if parts:
            self._propose_entry(commands, parts)

    def _propose_entry(self, commands: list[Command], parts: list[_Part]) -> None:
        self._next_token += 1
        self._proposed[self._next_token] = parts
        self.replica.step(CommandsProposed(proposal=self._next_token, commands=tuple(commands)))

    async def drain(self) -> None:
        while self.replica.has_ready():
            await self.handle_ready(self.replica.ready())

    async def handle_ready(self, ready: Ready) -> None:
        """Persist, then send, then apply, then answer: the Ready contract, in that order."""
        for outcome in ready.outcomes:
            match outcome:
                case ProposalAccepted(proposal=token, index=index, epoch=epoch):
                    self._awaiting[index] = (epoch, self._proposed.pop(token))
        batch, applied = stage(ready, self.ledger)
        if not batch.empty:
            await self.store.write_async(batch)  # durable (fsync) BEFORE anything is sent
        for outgoing in ready.messages:
            self.send(outgoing)
        if ready.committed:
            self.applied_index = ready.committed[-1].index
        for entry, results in applied:
            self._answer_writes(entry, results)
        for outcome in ready.outcomes:
            self._on_outcome(outcome)
        self._serve_held_reads()
        self.replica.advance(ready)

    def _answer_writes(self, entry: LogEntry, results: list[Result]) -> None:
        awaiting = self._awaiting.pop(entry.index, None)
        if awaiting is None:
            return
        epoch, parts = awaiting
        for part in parts:
            if entry.epoch == epoch:
                part.write.reply.set(Committed(
                    index=entry.index, results=results[part.offset: part.offset + part.count]))
            else:  # another leader's entry took this index: ours was never committed
                part.write.reply.set(_unknown("the entry was replaced after a leader change"))

    def _on_outcome(self, outcome: object) -> None:
        match outcome:
            case ProposalRejected(proposal=token, reason=reason, leader=leader):
                for part in self._proposed.pop(token, []):
                    part.write.reply.set(unavailable(reason, leader))
            case ReadsConfirmed(reads=tokens, index=index):
                self._held_reads.append((index, [self._reads.pop(t) for t in tokens]))
            case ReadsRejected(reads=tokens, reason=reason, leader=leader):
                for token in tokens:
                    self._reads.pop(token).reply.set(unavailable(reason, leader))
            case LeadershipEnded(epoch=epoch, reason=reason, relinquish=relinquish):
                self._on_leadership_ended(epoch, reason, relinquish)

    def _on_leadership_ended(self, epoch: Epoch, reason: str, relinquish: bool) -> None:
        log.warning("leadership of epoch %d ended: %s", epoch, reason)
        for _, parts in self._awaiting.values():
            for part in parts:
                part.write.reply.set(_unknown(f"leadership ended ({reason})"))
        self._awaiting.clear()
        if relinquish:
            self.relinquish(epoch, reason)

    def _serve_held_reads(self) -> None:
        still_held = []
        for index, reads in self._held_reads:
            if index > self.applied_index:
                still_held.append((index, reads))
                continue
            for read in reads:
                read.reply.set(_answer(partial(self._read, read.query)))
        self._held_reads = still_held

    def _read(self, query: Callable[[Ledger], Any]) -> ReadResult:
        return ReadResult(index=self.applied_index, value=query(self.ledger))


def stage(ready: Ready, ledger: Ledger) -> tuple[WriteBatch, list[tuple[LogEntry, list[Result]]]]:
    """Apply the Ready's committed entries to the ledger; return the one transaction to write."""
    delta = Delta()
    applied = [(entry, ledger.apply(entry, delta)) for entry in ready.committed]
    batch = WriteBatch(persist=ready.persist, delta=delta,
                       applied_index=ready.committed[-1].index if ready.committed else None)
    return batch, applied


def _answer(query: Callable[[], T]) -> T | Failure:
    """Run a read-only query for a client. A bug in one query fails that request, not the node."""
    try:
        return query()
    except Exception:
        log.exception("internal error answering a query")
        return Failure(code=ErrorCode.INTERNAL, message="internal error; the node logged it")


def _unknown(why: str) -> Failure:
    return Failure(code=ErrorCode.TIMEOUT,
                   message=f"outcome unknown: {why}; retry with the same ids, it is safe")
