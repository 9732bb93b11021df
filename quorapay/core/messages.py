"""Peer messages of the replication protocol (version 6), as typed msgspec Structs.

Every message carries the sender's epoch. The receiver compares it with the highest epoch it has
durably promised and refuses anything older. The wire form is msgpack, one `Frame` per websocket
binary message, stamped with the sender's hybrid logical clock; decoding validates every field,
so a malformed frame raises and is never used.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

import msgspec

from quorapay.core.bounds import Counter, Text
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.ledger.model import (
    AccountRow,
    Expiring,
    LedgerState,
    StagedSums,
    TransferRow,
)
from quorapay.core.types import EpochField, IndexField, LogEntry, LogIndex, NodeIdField

MAX_FRAME_BYTES = 64 * 2**20  # a peer frame (a batch of messages) is at most this, encoded
PROTOCOL_VERSION = 7  # 3: HLCs, clock probes; 4: TakeOver; 5: silence; 6: streamed snapshots;
# 7: linked chains, account limits and closing, balancing transfers (new commands in entries)
T = TypeVar("T")


class Prepare(msgspec.Struct, frozen=True, kw_only=True, tag="prepare"):
    """New leader -> all: promise to refuse every epoch below `epoch`, and report your log."""

    epoch: EpochField


class Promise(msgspec.Struct, frozen=True, kw_only=True, tag="promise"):
    """Reply to Prepare, sent only AFTER the promise is durable. Reports the last log entry,
    and the compaction point (entries up to it can only be had as a snapshot)."""

    epoch: EpochField
    last_index: IndexField
    last_epoch: EpochField
    log_start: IndexField = LogIndex(0)
    last_ts: Timestamp = ZERO  # the timestamp of the last entry

    def __post_init__(self) -> None:
        _require(self.log_start <= self.last_index, "log_start above last_index")
        _require(self.last_epoch <= self.epoch, "last_epoch above the promised epoch")


class Fetch(msgspec.Struct, frozen=True, kw_only=True, tag="fetch"):
    """Recovering leader -> the most up-to-date promiser: send your entries from `from_index`."""

    epoch: EpochField
    from_index: IndexField


class FetchReply(msgspec.Struct, frozen=True, kw_only=True, tag="fetch_reply"):
    """A chunk of the log from `from_index`; `last_index` is the sender's last index."""

    epoch: EpochField
    from_index: IndexField
    entries: tuple[LogEntry, ...]
    last_index: IndexField

    def __post_init__(self) -> None:
        _require(well_ordered(self.from_index - 1, 0, self.epoch, self.entries),
                 "entries out of order")
        _require(not self.entries or self.last_index >= self.entries[-1].index,
                 "last_index below the entries sent")


class Append(msgspec.Struct, frozen=True, kw_only=True, tag="append"):
    """Leader -> follower: entries after (prev_index, prev_epoch), plus the commit index.

    With no entries it is a heartbeat. `seq` is echoed in the reply; a majority of replies with
    seq >= s confirms the leader was still the leader after it sent s (linearizable reads).
    """

    epoch: EpochField
    prev_index: IndexField
    prev_epoch: EpochField
    entries: tuple[LogEntry, ...]
    commit: IndexField
    seq: Counter

    def __post_init__(self) -> None:
        _require(self.prev_epoch <= self.epoch, "prev_epoch above the epoch")
        _require(well_ordered(self.prev_index, self.prev_epoch, self.epoch, self.entries),
                 "entries out of order")


class AppendAck(msgspec.Struct, frozen=True, kw_only=True, tag="append_ack"):
    """The follower's log matches the leader's through `match_index`, durably."""

    epoch: EpochField
    match_index: IndexField
    seq: Counter


class AppendNack(msgspec.Struct, frozen=True, kw_only=True, tag="append_nack"):
    """The consistency check failed at prev_index. The hint tells the leader where to resume.

    `conflict_epoch` is the follower's epoch at prev_index (0 if it has no entry there) and
    `conflict_index` the first index the follower holds with that epoch (or its last index + 1).
    """

    epoch: EpochField
    prev_index: IndexField
    conflict_epoch: EpochField
    conflict_index: IndexField
    seq: Counter


class InstallSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="install_snapshot"):
    """The sender's whole ledger after applying `index` (an entry of `last_epoch`): for a node
    that needs entries the sender has compacted. Never sent as is: it is streamed in
    `SnapshotChunk`s (`quorapay.core.snapshot_stream`), and the receiver's NodeState hands it to
    its replica once every part is durably staged. With `staged`, `state` holds the accounts
    only and the transfers wait in the store's staging table."""

    epoch: EpochField
    index: IndexField
    last_epoch: EpochField
    state: LedgerState
    last_ts: Timestamp = ZERO  # the timestamp of the entry at `index`
    staged: StagedSums | None = None

    def __post_init__(self) -> None:
        _require(self.last_epoch <= self.epoch, "last_epoch above the epoch")


class SnapshotChunk(msgspec.Struct, frozen=True, kw_only=True, tag="snapshot_chunk"):
    """Part `seq` of the sender's ledger after applying `index` (an entry of `last_epoch`),
    sent by a leader to a follower, or by a fetch source to the recovering leader of `epoch`:
    the accounts first, then the decided transfers in id order, each part bounded. The last
    part says how many rows all the parts carried."""

    epoch: EpochField
    index: IndexField
    last_epoch: EpochField
    last_ts: Timestamp = ZERO
    stream: Counter  # which stream of the sender's: a new one starts over, never resumes
    seq: Counter
    accounts: tuple[AccountRow, ...] = ()
    transfers: tuple[TransferRow, ...] = ()
    expiring: tuple[Expiring, ...] = ()  # (in part 0) the pending transfers that will expire
    last: bool = False
    account_total: Counter = 0  # (in the last part) rows in all the parts
    transfer_total: Counter = 0

    def __post_init__(self) -> None:
        _require(self.last_epoch <= self.epoch, "last_epoch above the epoch")
        _require(_increasing([a.id for a in self.accounts])
                 and _increasing([t.id for t in self.transfers])
                 and _increasing([e.id for e in self.expiring]), "rows out of id order")


class SnapshotAck(msgspec.Struct, frozen=True, kw_only=True, tag="snapshot_ack"):
    """Receiver -> sender of the snapshot (`epoch`, `index`) in `stream`: every part below
    `next_seq` is durably staged here; send from there. 0: it holds none of that stream (it
    restarted, or took another one meanwhile): start over. Acknowledgements may arrive late or
    reordered: only a higher `next_seq`, or 0, means anything."""

    epoch: EpochField
    index: IndexField
    stream: Counter
    next_seq: Counter


class ClockProbe(msgspec.Struct, frozen=True, kw_only=True, tag="clock_probe"):
    """Any node -> any peer, every few ticks: my wall clock read `sent_ms` before sending this.

    Not part of replication: accepted whatever the epoch. `epoch` is the sender's promised one.
    """

    epoch: EpochField
    sent_ms: Counter


class ClockEcho(msgspec.Struct, frozen=True, kw_only=True, tag="clock_echo"):
    """The reply to a ClockProbe: my wall clock read `echo_ms` after your probe arrived.

    With the probe's send and the echo's arrival on the prober's clock, the peer's offset lies
    within [echo_ms - received, echo_ms - probe_ms] (the round trip bounds the error).
    """

    epoch: EpochField
    probe_ms: Counter
    echo_ms: Counter


class TakeOver(msgspec.Struct, frozen=True, kw_only=True, tag="take_over"):
    """Leader of `epoch` -> the follower it hands leadership to (a switchover): you hold every
    entry of my log and I take no more writes; claim leadership in ZooKeeper now, without
    waiting for your turn. A hint only: the claim is as safe as any other (ClaimEpoch), and if
    this message is lost the election queue decides as usual."""

    epoch: EpochField


class SilenceQuery(msgspec.Struct, frozen=True, kw_only=True, tag="silence_query"):
    """Follower -> the other followers: I have heard nothing from the leader of `epoch` for the
    leader-silence time; have you? (A majority agreeing deposes it in ZooKeeper at once,
    instead of after its session expires; the epochs' promises still fence it.)"""

    epoch: EpochField


class SilenceReport(msgspec.Struct, frozen=True, kw_only=True, tag="silence_report"):
    """The answer to SilenceQuery: `silent` if this node has not heard from the leader of
    `epoch` for at least half the leader-silence time, or has promised a later epoch."""

    epoch: EpochField
    silent: bool


class RefusalReason(StrEnum):
    STALE_EPOCH = "stale_epoch"  # the receiver promised a higher epoch
    EPOCH_TAKEN = "epoch_taken"  # the receiver promised this very epoch to another node


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag="refused"):
    """The receiver will not follow the sender in `epoch`: it has promised `promised_epoch`,
    which is above it (STALE_EPOCH) or is the same epoch, promised to another leader
    (EPOCH_TAKEN: two grants of one epoch, possible only if ZooKeeper's epoch record was lost).
    Either way the sender must stop leading `epoch` and claim above `promised_epoch`."""

    epoch: EpochField  # the epoch the refused message carried
    promised_epoch: EpochField
    reason: RefusalReason = RefusalReason.STALE_EPOCH


Message = (Prepare | Promise | Fetch | FetchReply | Append | AppendAck | AppendNack | Refused
           | InstallSnapshot | ClockProbe | ClockEcho | TakeOver | SilenceQuery | SilenceReport)
StreamMessage = SnapshotChunk | SnapshotAck  # a NodeState's, not its replica's
# What travels between nodes: InstallSnapshot never does (its parts do).
WireMessage = (Prepare | Promise | Fetch | FetchReply | Append | AppendAck | AppendNack
               | Refused | ClockProbe | ClockEcho | TakeOver | SilenceQuery | SilenceReport
               | SnapshotChunk | SnapshotAck)

# Messages that claim nothing about the sender's disk that safety rests on, so they leave as
# soon as they are made, beside (not after) the write of the batch that made them: a leader's
# Appends (it counts itself only once its own write is durable; Raft 10.2.1), clock probes and
# echoes, and the silence questions. An echo's epoch and a silence report may reflect a promise
# not yet durable: they decide only liveness (contact, deposing a silent leader), never what is
# committed. Every other message -- an acknowledgement, a promise, a refusal, a fetched entry --
# waits until the write of its batch, and of every batch before it, is durable.
SEND_AT_ONCE = (Append, ClockProbe, ClockEcho, SilenceQuery, SilenceReport)
# (A snapshot's parts also leave at once: they claim nothing of the sender's disk. Its
# acknowledgements wait for the write that staged the parts.)


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag="hello"):
    """The first frame on a peer link: who is speaking, in which cluster, which protocol."""

    version: Counter
    cluster: Text
    node: NodeIdField


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """One websocket message: a batch of messages from one sender, in send order, and the
    sender's hybrid logical clock and wall clock when it sent the last of them."""

    version: Counter
    messages: tuple[WireMessage, ...]
    hlc: Timestamp = ZERO
    wall_ms: Counter = 0  # the sender's wall clock then (ms since the Unix epoch)


def well_ordered(prev_index: int, prev_epoch: int, epoch: int,
                 entries: Sequence[LogEntry]) -> bool:
    """Whether `entries` follow `prev_index` contiguously, with epochs that never decrease from
    `prev_epoch` and never exceed `epoch` (the sender's): what any log's entries look like."""
    previous = prev_epoch
    for offset, entry in enumerate(entries, start=1):
        if entry.index != prev_index + offset or not previous <= entry.epoch <= epoch:
            return False
        previous = entry.epoch
    return True


def _increasing(ids: Sequence[str]) -> bool:
    return all(a < b for a, b in itertools.pairwise(ids))


def _require(condition: bool, problem: str) -> None:
    """A structural check of a decoded message: msgspec reports the ValueError as invalid."""
    if not condition:
        raise ValueError(problem)


_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(Frame)
_hello_decoder = msgspec.msgpack.Decoder(Hello)


def encode(value: Frame | Hello) -> bytes:
    return _encoder.encode(value)


def decode_frame(data: bytes) -> Frame:
    """Raises msgspec.DecodeError (ValidationError) on anything but a valid Frame."""
    return _decoded(_frame_decoder, data)


def decode_hello(data: bytes) -> Hello:
    return _decoded(_hello_decoder, data)


def _decoded(decoder: msgspec.msgpack.Decoder[T], data: bytes) -> T:
    try:
        return decoder.decode(data)
    except ValueError as exc:  # msgspec 0.22 raises UnicodeDecodeError for a broken tag
        if isinstance(exc, msgspec.DecodeError):
            raise
        raise msgspec.DecodeError(f"undecodable: {exc}") from None
