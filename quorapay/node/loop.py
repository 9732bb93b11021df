"""The driver loop of one node: batches inputs into its NodeState and carries out the work.

Two tasks. The stepping task takes every input that is waiting (up to a bound) and steps them
together -- client writes of the whole batch become one log entry -- then stages the work: what
claims nothing about the disk (a leader's Appends, clock probes, answers to writes whose entries
are committed) leaves at once, and the batches to make durable go to the writer. The writer
task takes every batch waiting and writes them in one SQLite transaction (one fsync for all:
group commit), then lets out what waited on them: acknowledgements, promises, answers. Writes
are pipelined: while one is in flight the node goes on stepping -- heartbeats, requests,
acknowledgements -- so a slow disk delays what depends on it, not the node (up to
MAX_WRITES_IN_FLIGHT batches; then inputs wait). Questions about the node's own state
(LocalQuery) are answered once the work of the batch that carried them is staged.
The decisions are all `quorapay.core.node_state`, and the order of the work is
`quorapay.core.executor`'s (the simulator runs the same executor); this module feeds it from a
trio channel and does the I/O behind its ports.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import trio

from quorapay.core.executor import (
    Executor,
    ExecutorInput,
    Observer,
    Ports,
    ReadAtOnce,
    SnapshotReads,
    Switchover,
)
from quorapay.core.inputs import Input, LeadershipGranted
from quorapay.core.ledger import Ledger
from quorapay.core.node_state import (
    Answer,
    Committed,
    Effects,
    ErrorCode,
    Failure,
    HandedOver,
    NodeState,
    Read,
    ReadValue,
    Work,
    Write,
    WriteBatch,
)
from quorapay.core.ready import LeadershipEnded, LeaderSilent, Outgoing
from quorapay.core.replica import Replica
from quorapay.core.snapshot_stream import ChunkLoaded, ChunkRead
from quorapay.core.types import Command, Epoch, LogIndex, NodeId
from quorapay.logs.quiet import QuietLog
from quorapay.node.roles import RoleLog
from quorapay.node.storage import Store

SLOW_WRITE = 0.2  # seconds: a write this long is logged (acknowledgements waited on it)
MAX_WRITES_IN_FLIGHT = 256  # batches staged and not yet durable; beyond, inputs wait
MAX_UNFINISHED = 4096  # work staged and waiting on a write (its own or an earlier one); likewise

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


DriverInput = Input | ClientWrite | ClientRead | ClientSwitchover | LocalQuery | ChunkLoaded


class Driver:
    """The node's trio side of the Executor: batches inputs off a channel, runs the executor,
    and makes the batches durable in a worker thread (the event loop never waits on a disk)."""

    def __init__(self, state: NodeState[Reply[Any]], store: Store,
                 send: Callable[[Outgoing], None],
                 relinquish: Callable[[LeadershipEnded], None],
                 wall_clock: Callable[[], int],
                 eligible: Callable[[bool], None] = lambda _: None,
                 claim: Callable[[Epoch], None] = lambda _: None,
                 depose: Callable[[LeaderSilent], None] = lambda _: None,
                 roles: RoleLog | None = None,
                 executor: type[Executor[Reply[Any]]] = Executor,
                 loopback: trio.MemorySendChannel[DriverInput] | None = None) -> None:
        """`loopback` feeds the driver's own inputs: parts of snapshots read in a worker
        thread come back through it (without it, they are read at once, in the loop)."""
        self.state = state
        self.store = store
        self._quiet = QuietLog(log)  # a misbehaving peer could flood the log; a clock can flap
        self._roles = roles if roles is not None else RoleLog(tick_seconds=0.05)
        self._local: list[LocalQuery] = []
        self._to_writer, self._writes = trio.open_memory_channel[WriteBatch](math.inf)
        self._landed = trio.Event()  # set (and replaced) each time a write lands
        self._loopback = loopback
        self._nursery: trio.Nursery | None = None
        reads: SnapshotReads = ReadAtOnce() if loopback is None else _ReadsOffLoop(self)
        self.executor = executor(state, Ports(
            transport=_Transport(send), clients=_Clients(),
            coordination=_Coordination(relinquish, claim, eligible, depose),
            clock=_Clock(wall_clock), observer=_Observer(state, self._roles, self._quiet),
            reads=reads))

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
        """Serve inputs until the channel closes; return once every write has landed."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._write_batches)
            async with inputs:
                async for first in inputs:
                    batch = [first]
                    while len(batch) < MAX_INPUTS_PER_BATCH:
                        try:
                            batch.append(inputs.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    self.step_batch(batch)
                    self.stage()
                    while self.executor.in_flight >= MAX_WRITES_IN_FLIGHT \
                            or self.state.unfinished >= MAX_UNFINISHED:
                        await self._landed.wait()
            while self.executor.in_flight:
                await self._landed.wait()
            self._to_writer.close()
            nursery.cancel_scope.cancel()  # parts of snapshots still being read: not needed

    def read_part(self, read: ChunkRead) -> None:
        """Read a part of a snapshot in a worker thread; step it back as an input."""
        assert self._nursery is not None
        assert self._loopback is not None
        self._nursery.start_soon(self._read_part, read, self._loopback)

    async def _read_part(self, read: ChunkRead,
                         loopback: trio.MemorySendChannel[DriverInput]) -> None:
        loaded = await trio.to_thread.run_sync(read.load, abandon_on_cancel=True)
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await loopback.send(loaded)  # (unless the node is stopping)

    def step_batch(self, batch: list[DriverInput]) -> None:
        items: list[ExecutorInput[Reply[Any]]] = []
        for item in batch:
            match item:
                case ClientWrite(commands=commands, reply=reply):
                    items.append(Write(key=reply, commands=commands))
                case ClientRead(query=query, reply=reply):
                    items.append(Read(key=reply, query=query))
                case ClientSwitchover(to=to, reply=reply):
                    items.append(Switchover(key=reply, to=to))
                case LocalQuery():
                    self._local.append(item)  # answered once the batch's work is done
                case LeadershipGranted():
                    self._roles.granted(item)
                    items.append(item)
                case _:
                    items.append(item)
        self.executor.step(items)

    def stage(self) -> None:
        """Stage the work there is: what needs no disk goes out, the batches go to the
        writer; then answer the questions about this node's state."""
        self._quiet.flush()
        for batch in self.executor.pending():
            self._to_writer.send_nowait(batch)
        local, self._local = self._local, []
        for item in local:
            item.reply.set(_answer(partial(item.query, self)))

    async def _write_batches(self) -> None:
        """The writer: every batch waiting, in one transaction; then what waited on them."""
        async with self._writes:
            async for first in self._writes:
                batches = [first]
                while True:
                    try:
                        batches.append(self._writes.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                started = trio.current_time()
                await self.store.write_async(batches)  # durable (fsync) BEFORE acks, answers
                took = trio.current_time() - started
                if took >= SLOW_WRITE:
                    self._quiet.warning("slow write", "a write took %.3f s (the disk is slow "
                                        "or busy): acknowledgements waited on it", took)
                self.executor.persisted(len(batches))
                self.stage()
                self._landed.set()
                self._landed = trio.Event()


@dataclass(frozen=True, slots=True)
class _ReadsOffLoop:
    driver: Driver

    def read(self, read: ChunkRead) -> ChunkLoaded | None:
        self.driver.read_part(read)
        return None


@dataclass(frozen=True, slots=True)
class _Transport:
    send: Callable[[Outgoing], None]  # non-blocking; may drop (the protocol retransmits)


class _Clients:
    def answer(self, key: Reply[Any], answer: Answer) -> None:
        _log_internal(answer)
        key.set(answer)


@dataclass(frozen=True, slots=True)
class _Coordination:
    relinquish: Callable[[LeadershipEnded], None]  # give up the ZooKeeper leadership of an epoch
    claim_now: Callable[[Epoch], None]  # claim ZooKeeper leadership: it was handed to us
    eligible: Callable[[bool], None]  # tell coordination whether to stand for election
    depose_now: Callable[[LeaderSilent], None]  # end a silent leader's ZooKeeper leadership

    def claim(self, epoch: Epoch) -> None:
        log.info("the leader of epoch %d hands leadership to this node: claiming it", epoch)
        self.claim_now(epoch)

    def depose(self, silent: LeaderSilent) -> None:
        log.warning("leader %s of epoch %d is silent: %s heard nothing from it; asking "
                    "ZooKeeper to depose it", silent.leader, silent.epoch,
                    ", ".join(silent.agreeing))
        self.depose_now(silent)


@dataclass(frozen=True, slots=True)
class _Clock:
    wall_ms: Callable[[], int]  # ms since the Unix epoch, as this node believes


class _Observer(Observer):
    """The node's logs: clock warnings, misbehaving peers, role changes."""

    def __init__(self, state: NodeState[Any], roles: RoleLog, quiet: QuietLog) -> None:
        self._state, self._roles, self._quiet = state, roles, quiet
        self._streams = (0, 0, 0, 0)  # snapshots begun, resumed, completed, installed

    def finished(self, work: Work, effects: Effects[Any]) -> None:
        self._log_snapshots()
        for warning in effects.clock_warnings:
            self._quiet.state(f"clock {warning.subject}",
                              logging.WARNING if warning.alarm else logging.INFO,
                              "%s", warning.message)
        for problem in effects.peer_problems:
            self._quiet.warning(f"peer-{problem.peer}", "dropped a message from %s: %s",
                                problem.peer, problem.detail)
        for ended in effects.ended:
            self._roles.ended(ended)
        self._roles.observe(self._state.replica)

    def idle(self) -> None:
        self._roles.observe(self._state.replica)  # changes without work (ZooKeeper suspended)

    def _log_snapshots(self) -> None:
        sending, receiving = self._state.sending, self._state.receiving
        now = (sending.started, sending.resumed, sending.completed, receiving.installed)
        if now == self._streams:
            return
        begun, resumed, completed, installed = self._streams
        self._streams = now
        if sending.started > begun or sending.completed > completed:
            log.info("snapshots: %d begun, %d sent whole; streaming now: %s", sending.started,
                     sending.completed, ", ".join(
                         f"{peer} (after entry {index}, {acked} parts acknowledged)"
                         for peer, (index, acked, _) in sending.active.items()) or "none")
        if sending.resumed > resumed:
            log.info("snapshot parts resent from the receiver's acknowledgement (%d times)",
                     sending.resumed)
        if receiving.installed > installed:
            log.info("received a whole snapshot: installing it")


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
