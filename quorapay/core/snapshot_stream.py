"""Streamed snapshots: a ledger sent in bounded parts, resumable, installed whole or not at all.

A node that needs entries its leader (or a recovering leader's fetch source) has compacted gets
the sender's ledger after some applied entry A instead. The sender's replica asks for it
(`SnapshotWanted`); this module's `SnapshotSender` then streams it as `SnapshotChunk`s -- the
accounts first, copied at A, then the decided transfers in id order, those with index <= A.
A part of transfers is read off the event loop (`ChunkRead`, carried out by the driver, which
steps back `ChunkLoaded`) from the store, which only ever adds rows: "index <= A" is the same
set whenever it is read, so the parts together are the ledger at A however long it takes.

The receiver's `SnapshotReceiver` stages each part in order on its disk (the store's staging
table; `WriteBatch.stage`) and, once the part is durable, acknowledges it (`SnapshotAck`, the
next part it needs). At most a window of parts is unacknowledged; parts lost, duplicated or
reordered are resent from the receiver's acknowledgement, and a sender that hears nothing for a
while resends from there too (a broken connection resumes where it broke, not from the start).
When the last part is durable, the receiver hands the whole snapshot to its replica as an
`InstallSnapshot` whose transfers stay staged: installing it swaps the staging table in, in the
same one transaction that replaces the log and the accounts -- all of it or nothing.

A receiver that restarts, or a new sender (a new leader, a new index), starts the stream over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import (
    MODULUS,
    AccountRow,
    LedgerState,
    SnapshotSource,
    StagedSums,
    TransferRow,
    transfer_row_hash,
)
from quorapay.core.messages import InstallSnapshot, SnapshotAck, SnapshotChunk
from quorapay.core.ready import SnapshotWanted
from quorapay.core.types import Epoch, LogIndex, NodeId, TransferId

Part = tuple[NodeId, SnapshotChunk]  # a part of a snapshot, and whom to send it


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRead:
    """Read the transfers of part `seq` of the snapshot for `peer`: the driver runs `load()`
    (off its event loop) and steps back the ChunkLoaded it returns."""

    peer: NodeId
    epoch: Epoch
    index: LogIndex
    seq: int
    after: TransferId | None
    limit: int
    source: SnapshotSource = field(repr=False)

    def load(self) -> ChunkLoaded:
        records, last = self.source.read(self.after, self.limit)
        return ChunkLoaded(read=self, records=tuple(records), last=last)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkLoaded:
    """A ChunkRead's result: the part's transfers, and whether they are the last."""

    read: ChunkRead
    records: tuple[TransferRow, ...]
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedChunk:
    """A received part's transfers, to add to the store's staging table, in the same write as
    nothing else; `first`: empty the staging table before (a new snapshot)."""

    first: bool
    transfers: tuple[TransferRow, ...]


@dataclass(slots=True, kw_only=True)
class _Sending:
    wanted: SnapshotWanted
    source: SnapshotSource
    account_parts: int
    cursors: list[TransferId | None]  # cursors[k]: the id transfer part k starts after
    counts: dict[int, int] = field(default_factory=dict)  # rows of each transfer part built
    built: dict[int, SnapshotChunk] = field(default_factory=dict)  # not yet acknowledged
    acked: int = 0  # the receiver needs part `acked` next
    sent_upto: int = 0  # parts below this were sent in the current flight
    total: int | None = None  # parts in all, once the last is built
    reading: int | None = None  # the part being read
    progress_at: int = 0  # the tick it began, or the receiver last acknowledged more
    stream: int = 0  # its number among this sender's streams (a new one never resumes another)
    paced: bool = True  # held to the rate limit (a follower's; not a recovering leader's)
    allowance: int = 0  # bytes it may still send this tick (with a rate limit; may go below 0)


class SnapshotSender:
    """The snapshots this node streams, one per peer that needs one."""

    def __init__(self, *, rows: int, window: int, resend_ticks: int, give_up_ticks: int,
                 bytes_per_tick: int = 0) -> None:
        """`bytes_per_tick`: the most a stream sends a tick, on average (0: no limit)."""
        self._rows, self._window, self._rate = rows, window, bytes_per_tick
        self._resend, self._give_up = resend_ticks, give_up_ticks
        self._sessions: dict[NodeId, _Sending] = {}
        self._done: dict[NodeId, tuple[Epoch, int]] = {}  # the last stream completed: when
        self._now = 0
        self.started = 0  # snapshots begun (for status and the simulator's coverage)
        self.resumed = 0  # flights resent from the receiver's acknowledgement
        self.restarted = 0  # streams begun again: the receiver had lost its parts
        self.completed = 0  # snapshots whose every part the receiver acknowledged

    @property
    def active(self) -> dict[NodeId, tuple[LogIndex, int, int | None]]:
        """Each peer streamed to: the snapshot's index, parts acknowledged, parts in all."""
        return {p: (s.wanted.index, s.acked, s.total) for p, s in self._sessions.items()}

    def want(self, wanted: SnapshotWanted, source: SnapshotSource, *, paced: bool = True,
             ) -> tuple[list[Part], list[ChunkRead]]:
        """The replica wants `wanted.to` sent the ledger at `wanted.index` (the ledger is
        there now: `source`). A stream to that peer in that epoch still moving goes on.
        `paced`: held to the rate limit -- a leader's to a follower (the cluster serves
        meanwhile), not a fetch source's to a recovering leader (it serves nothing until the
        snapshot is in)."""
        current = self._sessions.get(wanted.to)
        if current is not None and current.wanted.epoch == wanted.epoch \
                and self._now - current.progress_at < self._give_up:
            return [], []
        done = self._done.get(wanted.to)
        if done is not None and done[0] == wanted.epoch and self._now - done[1] < self._give_up:
            return [], []  # just sent: it is installing that one (its acknowledgement follows)
        assert source.index == wanted.index, "a snapshot is of the applied state"
        self.started += 1
        self._sessions[wanted.to] = _Sending(
            wanted=wanted, source=source, cursors=[None], progress_at=self._now,
            stream=self.started,
            paced=paced and self._rate > 0, allowance=self._rate,
            account_parts=max(1, -(-len(source.accounts) // self._rows)))
        return self._pump(self._sessions[wanted.to])

    def on_ack(self, peer: NodeId, ack: SnapshotAck) -> tuple[list[Part], list[ChunkRead]]:
        session = self._sessions.get(peer)
        if session is None or (ack.epoch, ack.index, ack.stream) != (
                session.wanted.epoch, session.wanted.index, session.stream):
            return [], []
        if ack.next_seq > session.acked:
            session.acked, session.progress_at = ack.next_seq, self._now
            session.sent_upto = max(session.sent_upto, ack.next_seq)
            session.built = {s: c for s, c in session.built.items() if s >= ack.next_seq}
            if session.total is not None and session.acked >= session.total:
                del self._sessions[peer]
                self._done[peer] = (session.wanted.epoch, self._now)
                self.completed += 1
                return [], []
        elif ack.next_seq == 0 < session.acked:  # it holds none of it (it restarted, say)
            self.restarted += 1
            session.acked = session.sent_upto = ack.next_seq
        else:
            return [], []  # (a gap is resent when the resend time passes)
        return self._pump(session)

    def on_loaded(self, loaded: ChunkLoaded) -> tuple[list[Part], list[ChunkRead]]:
        read = loaded.read
        session = self._sessions.get(read.peer)
        if session is None or session.reading != read.seq or session.source is not read.source:
            return [], []
        session.reading = None
        part = read.seq - session.account_parts
        session.counts[part] = len(loaded.records)
        if len(session.cursors) == part + 1:
            session.cursors.append(loaded.records[-1].id if loaded.records else read.after)
        if loaded.last:
            session.total = read.seq + 1
        session.built[read.seq] = self._chunk(session, read.seq, transfers=loaded.records,
                                              last=loaded.last)
        return self._pump(session)

    def tick(self, promised: Epoch) -> tuple[list[Part], list[ChunkRead]]:
        """A tick: give up streams of an epoch this node no longer serves, or that heard
        nothing for long; resend from the acknowledgement where nothing was heard a while."""
        self._now += 1
        chunks: list[Part] = []
        reads: list[ChunkRead] = []
        for peer, session in list(self._sessions.items()):
            quiet = self._now - session.progress_at
            if session.wanted.epoch < promised or quiet >= self._give_up:
                del self._sessions[peer]  # (the replica asks again if it still needs one)
                continue
            paced = session.paced and session.allowance <= 0
            if paced:
                session.allowance = min(session.allowance + self._rate, self._rate)
            resend = quiet and quiet % self._resend == 0 and session.sent_upto > session.acked
            if resend:
                self.resumed += 1
                session.sent_upto = session.acked
            if resend or paced:
                more, more_reads = self._pump(session)
                chunks += more
                reads += more_reads
        return chunks, reads

    def _pump(self, session: _Sending) -> tuple[list[Part], list[ChunkRead]]:
        """Send the parts the window allows, building them in order; at most one read."""
        chunks: list[Part] = []
        while session.sent_upto < session.acked + self._window and (
                session.total is None or session.sent_upto < session.total) and (
                not session.paced or session.allowance > 0):
            seq = session.sent_upto
            chunk = session.built.get(seq)
            if chunk is None and seq < session.account_parts:
                start = seq * self._rows
                chunk = self._chunk(session, seq, accounts=session.source.accounts[
                    start:start + self._rows])
                session.built[seq] = chunk
            if chunk is None:
                return chunks, self._read(session, seq)
            chunks.append((session.wanted.to, chunk))
            session.sent_upto += 1
            if session.paced:
                session.allowance -= encoded_size(chunk.accounts) + encoded_size(
                    chunk.transfers)
        return chunks, []

    def _read(self, session: _Sending, seq: int) -> list[ChunkRead]:
        part = seq - session.account_parts
        if session.reading is not None or part >= len(session.cursors):
            return []
        session.reading = seq
        wanted = session.wanted
        return [ChunkRead(peer=wanted.to, epoch=wanted.epoch, index=wanted.index, seq=seq,
                          after=session.cursors[part], limit=self._rows,
                          source=session.source)]

    def _chunk(self, session: _Sending, seq: int, *, accounts: tuple[AccountRow, ...] = (),
               transfers: tuple[TransferRow, ...] = (), last: bool = False) -> SnapshotChunk:
        wanted = session.wanted
        return SnapshotChunk(
            epoch=wanted.epoch, index=wanted.index, last_epoch=wanted.last_epoch,
            last_ts=wanted.last_ts, stream=session.stream, seq=seq, accounts=accounts,
            transfers=transfers, last=last,
            expiring=session.source.expiring if seq == 0 else (),
            account_total=len(session.source.accounts) if last else 0,
            transfer_total=sum(session.counts.values()) if last else 0)


@dataclass(slots=True, kw_only=True)
class _Receiving:
    sender: NodeId
    first: SnapshotChunk  # its part 0: epoch, index, last entry
    next_seq: int = 0  # parts accepted (staged, or being staged)
    durable_next: int = 0  # parts staged durably
    accounts: list[AccountRow] = field(default_factory=list)
    rows: list[TransferRow] = field(default_factory=list)  # without a store
    count: int = 0
    size: int = 0
    digest: int = 0
    last_id: str = ""
    complete: bool = False
    heard_at: int = 0
    early: dict[int, tuple[SnapshotChunk, Timestamp | None, int | None]] = field(
        default_factory=dict)  # parts that arrived ahead of a missing one

    @property
    def key(self) -> tuple[Epoch, LogIndex, int]:
        return self.first.epoch, self.first.index, self.first.stream

    def ack(self, next_seq: int) -> SnapshotAck:
        return SnapshotAck(epoch=self.first.epoch, index=self.first.index,
                           stream=self.first.stream, next_seq=next_seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """What a received part asks of the NodeState: stage `stage` (if any) and, once it is
    durable, send `ack` -- or send `ack` at once (`stage` None: it acknowledges durable
    parts); with `install`, hand the replica the whole snapshot after that."""

    sender: NodeId
    ack: SnapshotAck | None
    stage: StagedChunk | None = None
    install: InstallSnapshot | None = None
    hlc: Timestamp | None = None  # the last part's frame: the sender's clocks (for install)
    wall_ms: int | None = None


MAX_EARLY_PARTS = 16  # parts kept that arrived ahead of a missing one (reordered)


class SnapshotReceiver:
    """The snapshot this node is receiving, staged part by part."""

    def __init__(self, *, stalled_ticks: int, staged: bool) -> None:
        self._stalled = stalled_ticks
        self._staged = staged  # transfers go to the store's staging table (else: memory)
        self._session: _Receiving | None = None
        self._now = 0
        self.installed = 0  # snapshots handed to the replica whole
        self.replaced = 0  # snapshots half received, given up for a newer one

    def tick(self) -> None:
        self._now += 1

    def on_chunk(self, sender: NodeId, chunk: SnapshotChunk, promised: Epoch, *,
                 hlc: Timestamp | None = None, wall_ms: int | None = None) -> list[Received]:
        """What to stage or acknowledge for a part received: in order, with the parts that
        had arrived ahead of it."""
        received = self._on_chunk(sender, chunk, promised, hlc, wall_ms)
        session = self._session
        if received is None or received.stage is None or session is None:
            return [] if received is None else [received]
        result = [received]
        while (early := session.early.pop(session.next_seq, None)) is not None \
                and (more := self._accept(session, *early)) is not None:
            result.append(more)
        return result

    def _on_chunk(self, sender: NodeId, chunk: SnapshotChunk, promised: Epoch,
                  hlc: Timestamp | None, wall_ms: int | None) -> Received | None:
        if chunk.epoch < promised:
            return None  # (its install would be refused: the sender hears so otherwise)
        session = self._session
        key = (chunk.epoch, chunk.index, chunk.stream)
        if session is not None and session.sender == sender and session.key == key:
            if chunk.seq == session.next_seq and not session.complete:
                return self._accept(session, chunk, hlc, wall_ms)
            if chunk.seq < session.durable_next:  # a part resent: say what it holds
                return Received(sender=sender, ack=session.ack(session.durable_next))
            if chunk.seq > session.next_seq and len(session.early) < MAX_EARLY_PARTS:
                session.early[chunk.seq] = (chunk, hlc, wall_ms)  # after a gap: keep it
            return None  # being staged (its acknowledgement follows)
        if chunk.seq == 0 and (session is None or key > session.key
                               or self._now - session.heard_at >= self._stalled):
            if session is not None and not session.complete:
                self.replaced += 1
            self._session = _Receiving(sender=sender, first=chunk, heard_at=self._now)
            return self._accept(self._session, chunk, hlc, wall_ms)
        return Received(sender=sender, ack=SnapshotAck(epoch=chunk.epoch, index=chunk.index,
                                                       stream=chunk.stream, next_seq=0))

    def durable(self, received: Received) -> InstallSnapshot | None:
        """`received.stage` is durable: the parts it staged count as held."""
        session, ack = self._session, received.ack
        if session is None or ack is None or received.sender != session.sender \
                or (ack.epoch, ack.index, ack.stream) != session.key:
            return None  # (a part of a stream replaced since it was accepted)
        session.durable_next = max(session.durable_next, ack.next_seq)
        return received.install if session.complete and received.install else None

    def _accept(self, session: _Receiving, chunk: SnapshotChunk, hlc: Timestamp | None,
                wall_ms: int | None) -> Received | None:
        last_account = session.accounts[-1].id if session.accounts else ""
        if (chunk.accounts and chunk.accounts[0].id <= last_account) or (
                chunk.transfers and chunk.transfers[0].id <= session.last_id):
            self._session = None  # parts that do not follow on: a broken sender; start over
            return None
        session.heard_at = self._now
        session.next_seq += 1
        session.accounts += chunk.accounts
        rows = chunk.transfers
        if rows:
            session.last_id = rows[-1].id
            session.count += len(rows)
            session.size += encoded_size(rows)
            session.digest = (session.digest + sum(map(transfer_row_hash, rows))) % MODULUS
            if not self._staged:
                session.rows += rows
        install = None
        if chunk.last:
            if (chunk.account_total, chunk.transfer_total) != (len(session.accounts),
                                                               session.count):
                self._session = None
                return None
            session.complete = True
            install = self._install(session, chunk)
        return Received(sender=session.sender, stage=StagedChunk(
            first=chunk.seq == 0, transfers=rows if self._staged else ()),
            ack=session.ack(session.next_seq),
            install=install, hlc=hlc, wall_ms=wall_ms)

    def _install(self, session: _Receiving, last: SnapshotChunk) -> InstallSnapshot:
        self.installed += 1
        first = session.first
        transfers = () if self._staged else tuple(session.rows)
        return InstallSnapshot(
            epoch=first.epoch, index=first.index, last_epoch=first.last_epoch,
            last_ts=first.last_ts, state=LedgerState(accounts=tuple(session.accounts),
                                                     transfers=transfers,
                                                     expiring=first.expiring),
            staged=StagedSums(count=session.count, size=session.size, digest=session.digest)
            if self._staged else None)


_encoder = msgspec.msgpack.Encoder()


def encoded_size(rows: tuple[TransferRow, ...] | tuple[AccountRow, ...]) -> int:
    """The rows' encoded sizes, summed (as `row_size` each, but encoded at C speed)."""
    header = 1 if len(rows) < 16 else 3 if len(rows) < 65536 else 5  # (a msgpack array's)
    return len(_encoder.encode(rows)) - header

