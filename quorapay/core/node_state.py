"""Everything one node decides, without doing any I/O: its replica, its ledger, and the client
requests waiting on them. The trio node driver and the simulator both run this same code.

`quorapay.core.executor.Executor` uses it so (and nothing else should):

    state.step(input) / state.submit(writes) / state.read(read)   # a batch of inputs, then
    while (work := state.next_work()) is not None:
        hand work.batch to the writer (one transaction, fsync)     # 1. in order
    ...and, as writes land, oldest first (more inputs may be stepped meanwhile):
        effects = state.finish(work)                               # work.batch and every
        send effects.messages                                      # earlier one durable
        deliver effects.answers; relinquish effects.relinquish     # 2. only AFTER 1

`next_work` applies committed entries to the in-memory ledger when it stages them (so
`applied_index` is what that ledger reflects); a node that crashes before the batch is durable
loses that memory with it and recovers from its disk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from quorapay.core.compaction import CompactionPolicy
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.inputs import (
    CommandsProposed,
    CompactionRequested,
    Input,
    MessageReceived,
    ReadRequested,
    SnapshotProgressed,
    SwitchoverRequested,
    Ticked,
)
from quorapay.core.ledger import Delta, Ledger, Result
from quorapay.core.messages import SnapshotAck, SnapshotChunk
from quorapay.core.ready import (
    ClockWarning,
    LeadershipEnded,
    LeaderSilent,
    Outcome,
    Outgoing,
    PeerMisbehaved,
    Persist,
    ProposalAccepted,
    ProposalRejected,
    ReadsConfirmed,
    ReadsRejected,
    Ready,
    SwitchoverAnswered,
    TakeOverAsked,
    Unavailable,
)
from quorapay.core.replica import Replica, Role
from quorapay.core.snapshot_stream import (
    ChunkLoaded,
    ChunkRead,
    Part,
    Received,
    SnapshotReceiver,
    SnapshotSender,
    StagedChunk,
)
from quorapay.core.types import Command, Epoch, LogEntry, LogIndex, NodeId, command_weight

MAX_COMMANDS_PER_ENTRY = 2000
MAX_HELD_TRANSFERS = 20_000  # apply rows held back for a log write: at most this many
EXPIRY_RETRY_TICKS = 10  # an idle leader's entry to expire pending transfers: again after this
K = TypeVar("K")  # the driver's handle for one client request (a reply slot, a simulated op)


class ErrorCode(StrEnum):
    """Why a request got no ledger outcome. The client API's error codes."""

    NOT_LEADER = "NOT_LEADER"  # retryable: ask the leader
    UNAVAILABLE = "UNAVAILABLE"  # retryable: no quorum, leader recovering, ZooKeeper suspended
    TIMEOUT = "TIMEOUT"  # outcome unknown: retry with the same ids, it is safe
    INVALID_REQUEST = "INVALID_REQUEST"  # not retryable: malformed or over limits
    UNAUTHENTICATED = "UNAUTHENTICATED"  # not retryable: no valid credential of this cluster
    FORBIDDEN = "FORBIDDEN"  # not retryable: the credential's role may not do this
    INTERNAL = "INTERNAL"  # not retryable as is: a bug; the node logged it

    @property
    def retryable(self) -> bool:
        return self in (ErrorCode.NOT_LEADER, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A request that got no ledger outcome."""

    code: ErrorCode
    message: str
    leader: NodeId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    """A write's outcome: the entry that carried it and one result per command."""

    index: LogIndex
    epoch: Epoch  # the epoch of that entry: of the leader that committed it
    results: list[Result]
    ts: Timestamp = ZERO  # that entry's timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadValue:
    """A linearizable read's value, computed from the ledger after applying `index`."""

    index: LogIndex
    epoch: Epoch  # the epoch of the leader that confirmed it
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class HandedOver:
    """A switchover's outcome: `node` gave up leading `epoch` for `to`, after refusing new
    requests for `ticks` while `to` caught up."""

    node: NodeId
    to: NodeId
    epoch: Epoch
    ticks: int


Answer = Committed | ReadValue | HandedOver | Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class Write(Generic[K]):
    key: K
    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Read(Generic[K]):
    """A linearizable read: `query` runs on the ledger once leadership is confirmed."""

    key: K
    query: Callable[[Ledger], Any]


@dataclass(slots=True, kw_only=True)
class WriteBatch:
    """One transaction: the Ready's persist work plus the ledger rows of the entries applied."""

    persist: Persist | None = None
    delta: Delta = field(default_factory=Delta)
    applied_index: LogIndex | None = None
    stage: StagedChunk | None = None  # a received snapshot part, to stage (nothing else)

    @property
    def empty(self) -> bool:
        return self.persist is None and self.applied_index is None and self.stage is None

    def after(self, held: WriteBatch) -> WriteBatch:
        """This batch, with the ledger rows of an earlier apply-only batch written first."""
        if self.persist is not None and self.persist.install is not None:
            assert held.applied_index is None or held.applied_index < self.persist.install.index
            return self  # the snapshot replaces the ledger: it holds those entries' effect
        delta = Delta(accounts={**held.delta.accounts, **self.delta.accounts},
                      transfers=held.delta.transfers + self.delta.transfers,
                      expiring={**held.delta.expiring, **self.delta.expiring})
        return WriteBatch(persist=self.persist, delta=delta, applied_index=(
            held.applied_index if self.applied_index is None else self.applied_index))


@dataclass(frozen=True, slots=True, kw_only=True)
class Work:
    """A Ready, staged: `batch`, and every earlier Work's, MUST be durable before
    `NodeState.finish(work)`."""

    ready: Ready
    batch: WriteBatch
    applied: list[tuple[LogEntry, list[Result]]]
    # no Ready of the replica's: it writes the held apply rows, or carries snapshot parts
    # (`ready.messages`, reads of parts to send, a received part to stage)
    flush: bool = False
    reads: tuple[ChunkRead, ...] = ()  # parts of snapshots to read: the driver, off its loop
    received: Received | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Effects(Generic[K]):
    """What a finished Work asks of the driver, in this order."""

    messages: tuple[Outgoing, ...]  # 1. send
    answers: list[tuple[K, Answer]]  # 2. answer clients
    relinquish: list[LeadershipEnded]  # 3. give up these ZooKeeper leaderships
    ended: list[LeadershipEnded]  # every leadership that ended (for logs and observers)
    claims: list[Epoch] = field(default_factory=list)  # 4. claim leadership now (a handover)
    depose: list[LeaderSilent] = field(default_factory=list)  # 5. depose these silent leaders
    clock_warnings: list[ClockWarning] = field(default_factory=list)  # for the log
    peer_problems: list[PeerMisbehaved] = field(default_factory=list)  # for the log


@dataclass(frozen=True, slots=True)
class _Part(Generic[K]):
    """Commands[offset : offset + count] of an entry belong to this client write."""

    key: K
    offset: int
    count: int


_UNAVAILABLE = {
    Unavailable.NOT_LEADER: (ErrorCode.NOT_LEADER, "this node is not the leader"),
    Unavailable.RECOVERING: (ErrorCode.UNAVAILABLE, "a new leader is taking over and has not "
                             "yet reached a majority of nodes to recover the log"),
    Unavailable.SUSPENDED: (ErrorCode.UNAVAILABLE, "the leader lost its ZooKeeper connection; "
                            "writes are paused"),
    Unavailable.NO_QUORUM: (ErrorCode.UNAVAILABLE, "no quorum of nodes is reachable"),
    Unavailable.HANDING_OVER: (ErrorCode.UNAVAILABLE, "the leader is handing leadership over "
                               "to another node (a switchover); retry shortly"),
}


def unavailable(reason: Unavailable, leader: NodeId | None) -> Failure:
    code, message = _UNAVAILABLE[reason]
    return Failure(code=code, message=message, leader=leader)


def unknown(why: str) -> Failure:
    return Failure(code=ErrorCode.TIMEOUT,
                   message=f"outcome unknown: {why}; retry with the same ids, it is safe")


def stage(ready: Ready, ledger: Ledger) -> tuple[WriteBatch, list[tuple[LogEntry, list[Result]]]]:
    """Install the Ready's snapshot, if any, then apply its committed entries to the ledger;
    return the one transaction to write."""
    install = ready.persist.install if ready.persist is not None else None
    if install is not None:
        ledger.replace(install.state, install.index, install.staged)
    delta = Delta()
    applied = ledger.apply_all(ready.committed, delta)
    applied_index = ready.committed[-1].index if ready.committed else None
    if applied_index is None and install is not None:
        applied_index = install.index
    return WriteBatch(persist=ready.persist, delta=delta, applied_index=applied_index), applied


class NodeState(Generic[K]):
    def __init__(self, replica: Replica, ledger: Ledger, *,
                 compaction: CompactionPolicy | None = None) -> None:
        self.replica = replica
        self.ledger = ledger
        self.compaction = compaction
        self.applied_index = replica.applied_index  # what the in-memory ledger reflects
        self.durable_applied = replica.applied_index  # what the disk's ledger reflects
        self._next_token = 0
        self._proposed: dict[int, list[_Part[K]]] = {}
        self._awaiting: dict[LogIndex, tuple[Epoch, list[_Part[K]]]] = {}
        self._reads: dict[int, Read[K]] = {}
        self._switchovers: dict[int, K] = {}
        self._held_reads: list[tuple[LogIndex, Epoch, list[Read[K]]]] = []
        self._staged: deque[Work] = deque()  # handed to the driver, not yet finished
        self._held: WriteBatch | None = None  # apply rows waiting for a log write to join
        self._held_ticks = 0
        self._ticks = 0
        self._expiry_asked_at: int | None = None  # the tick it last appended one to expire
        timing = replica.timing
        self.sending = SnapshotSender(
            rows=timing.snapshot_chunk_rows, window=timing.snapshot_window,
            resend_ticks=timing.snapshot_retry_ticks,
            give_up_ticks=4 * timing.snapshot_retry_ticks,
            bytes_per_tick=timing.snapshot_bytes_per_tick)
        self.receiving = SnapshotReceiver(stalled_ticks=4 * timing.snapshot_retry_ticks,
                                          staged=ledger.store is not None)
        self._stream: list[Outgoing] = []  # snapshot parts and acknowledgements to send
        self._part_reads: list[ChunkRead] = []  # parts of snapshots to read
        self._received: deque[Received] = deque()  # parts to stage, in order
        self._installing: Work | None = None  # a snapshot's install, staged, not yet durable

    # ------------------------------------------------------------------ inputs

    def step(self, event: Input | ChunkLoaded) -> None:
        match event:
            case MessageReceived(sender=sender, message=SnapshotChunk() as chunk):
                if sender in self.replica.peers:
                    self._on_chunk(event, chunk)
            case MessageReceived(sender=sender, message=SnapshotAck() as ack):
                self._send_parts(*self.sending.on_ack(sender, ack))
            case ChunkLoaded():
                self._send_parts(*self.sending.on_loaded(event))
            case Ticked():
                if self._held is not None:
                    self._held_ticks += 1
                self.receiving.tick()
                self._send_parts(*self.sending.tick(self.replica.promised_epoch))
                self.replica.step(event)
                self._ticks += 1
                self._expire_when_idle()
            case _:
                self.replica.step(event)

    def _expire_when_idle(self) -> None:
        """A pending transfer expires at the first entry stamped at or past its time: when
        that time has come and the log is idle, the serving leader appends an empty entry."""
        due = self.ledger.next_expiry()
        if due is None or not self.replica.serving:
            return
        if max(self.replica.wall_ms, self.replica.hlc.wall_ms) < due:
            return
        if self._expiry_asked_at is not None and \
                self._ticks - self._expiry_asked_at < EXPIRY_RETRY_TICKS:
            return
        self._expiry_asked_at = self._ticks
        self._propose([], [])

    def submit(self, writes: Sequence[Write[K]]) -> list[int]:
        """Propose a batch of client writes as few entries as the size bound allows; return
        the proposals' tokens (the `proposal` of their outcomes)."""
        commands: list[Command] = []
        parts: list[_Part[K]] = []
        tokens: list[int] = []
        weight = 0
        for write in writes:
            added = sum(map(command_weight, write.commands))
            if commands and weight + added > MAX_COMMANDS_PER_ENTRY:
                tokens.append(self._propose(commands, parts))
                commands, parts, weight = [], [], 0
            weight += added
            parts.append(_Part(write.key, len(commands), len(write.commands)))
            commands.extend(write.commands)
        if parts:
            tokens.append(self._propose(commands, parts))
        return tokens

    def _propose(self, commands: list[Command], parts: list[_Part[K]]) -> int:
        self._next_token += 1
        self._proposed[self._next_token] = parts
        self.replica.step(CommandsProposed(proposal=self._next_token, commands=tuple(commands)))
        return self._next_token

    def read(self, read: Read[K]) -> int:
        """Ask for a linearizable read; return its token (in ReadsConfirmed / ReadsRejected)."""
        self._next_token += 1
        self._reads[self._next_token] = read
        self.replica.step(ReadRequested(read=self._next_token))
        return self._next_token

    def switchover(self, key: K, to: NodeId | None) -> None:
        """Hand leadership to `to` (None: the most caught-up follower in contact), if this node
        leads; the answer is HandedOver or a Failure."""
        self._next_token += 1
        self._switchovers[self._next_token] = key
        self.replica.step(SwitchoverRequested(request=self._next_token, to=to))

    # ------------------------------------------------------------------ the Ready contract

    @property
    def unfinished(self) -> int:
        """Works staged and not yet finished (their writes, or earlier ones, in flight)."""
        return len(self._staged)

    def next_work(self) -> Work | None:
        """The next Ready, staged; None when the replica has nothing to do. Works are
        finished in the order they were staged. While a snapshot's install is being written,
        nothing more is staged: until it is durable, the store holds the ledger it replaces."""
        if self._installing is not None:
            return None
        if not self.replica.has_ready():
            if self._stream or self._part_reads or self._received:
                return self._stream_work()
            return self._flush() if self._hold_over() else None
        ready = self.replica.ready()
        for outcome in ready.outcomes:
            if isinstance(outcome, ProposalAccepted):
                self._awaiting[outcome.index] = (outcome.epoch,
                                                 self._proposed.pop(outcome.proposal))
        batch, applied = stage(ready, self.ledger)
        if batch.applied_index is not None:
            self.applied_index = batch.applied_index
        batch = self._hold_or_join(batch)
        work = Work(ready=ready, batch=batch, applied=applied)
        self._staged.append(work)
        if ready.persist is not None and ready.persist.install is not None:
            self._installing = work
        for wanted in ready.snapshots:  # paced only while the cluster serves (this node leads)
            self._send_parts(*self.sending.want(wanted, self.ledger.snapshot_source(),
                                                paced=self.replica.role is Role.LEADER))
        return work

    def committed_answers(self, work: Work) -> list[tuple[K, Answer]]:
        """The answers to client writes whose entries `work` applies. They may go out before
        `work.batch` is durable: the entries are committed -- durable on a majority -- and
        their results follow from the log alone (a node that crashes before its applied state
        is on disk applies them again, to the same results). `finish` will not repeat them."""
        answers: list[tuple[K, Answer]] = []
        for entry, results in work.applied:
            answers += self._answer_writes(entry, results)
        return answers

    def finish(self, work: Work) -> Effects[K]:
        """`work.batch`, and every earlier Work's, is durable: advance, and say what to send
        and whom to answer."""
        assert self._staged, "finish() without a staged Work"
        assert work is self._staged[0], "finish() takes the oldest Work"
        self._staged.popleft()
        if work is self._installing:
            self._installing = None
        ready = work.ready
        if work.batch.applied_index is not None:
            self.durable_applied = work.batch.applied_index
            persist = work.batch.persist
            self.ledger.durable(work.batch.delta.transfers, persist.install.state
                                if persist is not None and persist.install is not None else None)
        if work.flush:
            if work.received is not None:
                self._staged_part(work.received)
            self._maybe_compact()
            return Effects(messages=ready.messages, answers=[], relinquish=[], ended=[])
        answers: list[tuple[K, Answer]] = []
        for entry, results in work.applied:
            answers += self._answer_writes(entry, results)
        ended: list[LeadershipEnded] = []
        for outcome in ready.outcomes:
            answers += self._on_outcome(outcome, ended)
        answers += self._serve_held_reads()
        messages = ready.messages
        self.replica.advance(ready)
        self._maybe_compact()
        return Effects(messages=messages, answers=answers,
                       relinquish=[e for e in ended if e.relinquish], ended=ended,
                       claims=[o.epoch for o in ready.outcomes if isinstance(o, TakeOverAsked)],
                       depose=[o for o in ready.outcomes if isinstance(o, LeaderSilent)],
                       clock_warnings=[o for o in ready.outcomes if isinstance(o, ClockWarning)],
                       peer_problems=[o for o in ready.outcomes
                                      if isinstance(o, PeerMisbehaved)])

    def _hold_or_join(self, batch: WriteBatch) -> WriteBatch:
        """Hold an apply-only batch back (its rows join the next log write, one transaction
        and fsync for both: the applied state on disk is only a checkpoint of the log, and
        its answers left already); join what is held to a batch that writes the log, or to
        an apply-only one once the hold is over."""
        if batch.persist is None and batch.applied_index is not None \
                and self.replica.role is not Role.FOLLOWER \
                and self.replica.timing.apply_hold_ticks:  # (followers hold in the replica)
            self._held = batch if self._held is None else batch.after(self._held)
            if not self._hold_over():
                return WriteBatch()
            batch, self._held, self._held_ticks = self._held, None, 0
        elif self._held is not None and batch.persist is not None:
            batch, self._held, self._held_ticks = batch.after(self._held), None, 0
        return batch

    def _hold_over(self) -> bool:
        held = self._held
        return held is not None and (self._held_ticks >= self.replica.timing.apply_hold_ticks
                                     or len(held.delta.transfers) >= MAX_HELD_TRANSFERS)

    def _flush(self) -> Work:
        """A Work that writes the held apply rows alone (nothing joined them in time)."""
        batch, self._held, self._held_ticks = self._held, None, 0
        assert batch is not None
        work = Work(ready=Ready(persist=None, messages=(), committed=(), outcomes=()),
                    batch=batch, applied=[], flush=True)
        self._staged.append(work)
        return work

    # ------------------------------------------------------------------ streamed snapshots

    def _send_parts(self, parts: list[Part], reads: list[ChunkRead]) -> None:
        replica = self.replica
        for peer, chunk in parts:
            self._stream.append(Outgoing(to=peer, message=chunk, hlc=replica.hlc,
                                         wall_ms=replica.wall_ms, after_persist=False))
        self._part_reads += reads

    def _on_chunk(self, event: MessageReceived, chunk: SnapshotChunk) -> None:
        sender = event.sender
        for received in self.receiving.on_chunk(sender, chunk, self.replica.promised_epoch,
                                                hlc=event.hlc, wall_ms=event.wall_ms):
            self._on_received(received)

    def _on_received(self, received: Received) -> None:
        if received.stage is None:
            assert received.ack is not None
            self._stream.append(Outgoing(to=received.sender, message=received.ack,
                                         hlc=self.replica.hlc, wall_ms=self.replica.wall_ms,
                                         after_persist=False))  # (it says what is durable)
        else:
            self._received.append(received)

    def _stream_work(self) -> Work:
        """A Work of snapshot parts: those to send and read now, and the next part received
        to stage (its acknowledgement leaves once it is durable)."""
        messages, self._stream = tuple(self._stream), []
        reads, self._part_reads = tuple(self._part_reads), []
        received = self._received.popleft() if self._received else None
        if received is not None and received.ack is not None:
            messages += (Outgoing(to=received.sender, message=received.ack,
                                  hlc=self.replica.hlc, wall_ms=self.replica.wall_ms),)
        work = Work(ready=Ready(persist=None, messages=messages, committed=(), outcomes=()),
                    batch=WriteBatch(stage=received.stage if received else None), applied=[],
                    flush=True, reads=reads, received=received)
        self._staged.append(work)
        return work

    def _staged_part(self, received: Received) -> None:
        """A received part is durable: count the stream as progress; hand a whole snapshot
        to the replica."""
        if received.ack is not None:
            self.replica.step(SnapshotProgressed(sender=received.sender,
                                                 epoch=received.ack.epoch))
        install = self.receiving.durable(received)
        if install is not None:
            self.replica.step(MessageReceived(sender=received.sender, message=install,
                                              hlc=received.hlc, wall_ms=received.wall_ms))

    def _maybe_compact(self) -> None:
        if self.compaction is None:
            return
        upto = self.compaction.upto(self.replica.log, self.durable_applied)
        if upto is not None:
            self.replica.step(CompactionRequested(upto=upto))

    def _answer_writes(self, entry: LogEntry, results: list[Result]) -> list[tuple[K, Answer]]:
        awaiting = self._awaiting.pop(entry.index, None)
        if awaiting is None:
            return []
        epoch, parts = awaiting
        if entry.epoch != epoch:  # another leader's entry took this index: ours never committed
            return [(p.key, unknown("the entry was replaced after a leader change"))
                    for p in parts]
        return [(p.key, Committed(index=entry.index, epoch=entry.epoch, ts=entry.ts,
                                  results=results[p.offset:p.offset + p.count])) for p in parts]

    def _on_outcome(self, outcome: Outcome, ended: list[LeadershipEnded]
                    ) -> list[tuple[K, Answer]]:
        match outcome:
            case ProposalRejected(proposal=token, reason=reason, leader=leader):
                return [(p.key, unavailable(reason, leader))
                        for p in self._proposed.pop(token, [])]
            case ReadsConfirmed(reads=tokens, index=index, epoch=epoch):
                self._held_reads.append((index, epoch, [self._reads.pop(t) for t in tokens]))
            case ReadsRejected(reads=tokens, reason=reason, leader=leader):
                return [(self._reads.pop(t).key, unavailable(reason, leader)) for t in tokens]
            case SwitchoverAnswered(request=token):
                key = self._switchovers.pop(token, None)
                return [] if key is None else [(key, _switchover_answer(outcome, self.replica))]
            case LeadershipEnded(reason=reason):
                ended.append(outcome)
                waiting = [(p.key, unknown(f"leadership ended ({reason})"))
                           for _, parts in self._awaiting.values() for p in parts]
                self._awaiting.clear()
                return waiting  # type: ignore[return-value]
        return []

    def _serve_held_reads(self) -> list[tuple[K, Answer]]:
        answers: list[tuple[K, Answer]] = []
        still_held = []
        for index, epoch, reads in self._held_reads:
            if index > self.applied_index:
                still_held.append((index, epoch, reads))
                continue
            answers += [(read.key, self._serve(read, epoch)) for read in reads]
        self._held_reads = still_held
        return answers

    def _serve(self, read: Read[K], epoch: Epoch) -> Answer:
        try:
            return ReadValue(index=self.applied_index, epoch=epoch,
                             value=read.query(self.ledger))
        except Exception:  # a bug in one query fails that request, not the node
            return Failure(code=ErrorCode.INTERNAL, message="internal error serving a read")


def _switchover_answer(answer: SwitchoverAnswered, replica: Replica) -> Answer:
    if answer.to is not None:
        return HandedOver(node=replica.node_id, to=answer.to, epoch=answer.epoch,
                          ticks=answer.ticks)
    if answer.refusal is not None:
        return unavailable(answer.refusal, replica.leader)
    if answer.invalid:
        return Failure(code=ErrorCode.INVALID_REQUEST, message=answer.invalid)
    return Failure(code=ErrorCode.UNAVAILABLE, message=answer.gave_up)
