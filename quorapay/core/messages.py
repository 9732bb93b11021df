"""Peer messages of the replication protocol (version 3), as typed msgspec Structs.

Every message carries the sender's epoch. The receiver compares it with the highest epoch it has
durably promised and refuses anything older. The wire form is msgpack, one `Frame` per websocket
binary message, stamped with the sender's hybrid logical clock; decoding validates every field,
so a malformed frame raises and is never used.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.ledger import LedgerState
from quorapay.core.types import Epoch, LogEntry, LogIndex, NodeId

PROTOCOL_VERSION = 3  # 3: hybrid logical clocks, clock probes


class Prepare(msgspec.Struct, frozen=True, kw_only=True, tag="prepare"):
    """New leader -> all: promise to refuse every epoch below `epoch`, and report your log."""

    epoch: Epoch


class Promise(msgspec.Struct, frozen=True, kw_only=True, tag="promise"):
    """Reply to Prepare, sent only AFTER the promise is durable. Reports the last log entry,
    and the compaction point (entries up to it can only be had as a snapshot)."""

    epoch: Epoch
    last_index: LogIndex
    last_epoch: Epoch
    log_start: LogIndex = LogIndex(0)
    last_ts: Timestamp = ZERO  # the timestamp of the last entry


class Fetch(msgspec.Struct, frozen=True, kw_only=True, tag="fetch"):
    """Recovering leader -> the most up-to-date promiser: send your entries from `from_index`."""

    epoch: Epoch
    from_index: LogIndex


class FetchReply(msgspec.Struct, frozen=True, kw_only=True, tag="fetch_reply"):
    """A chunk of the log from `from_index`; `last_index` is the sender's last index."""

    epoch: Epoch
    from_index: LogIndex
    entries: tuple[LogEntry, ...]
    last_index: LogIndex


class Append(msgspec.Struct, frozen=True, kw_only=True, tag="append"):
    """Leader -> follower: entries after (prev_index, prev_epoch), plus the commit index.

    With no entries it is a heartbeat. `seq` is echoed in the reply; a majority of replies with
    seq >= s confirms the leader was still the leader after it sent s (linearizable reads).
    """

    epoch: Epoch
    prev_index: LogIndex
    prev_epoch: Epoch
    entries: tuple[LogEntry, ...]
    commit: LogIndex
    seq: int


class AppendAck(msgspec.Struct, frozen=True, kw_only=True, tag="append_ack"):
    """The follower's log matches the leader's through `match_index`, durably."""

    epoch: Epoch
    match_index: LogIndex
    seq: int


class AppendNack(msgspec.Struct, frozen=True, kw_only=True, tag="append_nack"):
    """The consistency check failed at prev_index. The hint tells the leader where to resume.

    `conflict_epoch` is the follower's epoch at prev_index (0 if it has no entry there) and
    `conflict_index` the first index the follower holds with that epoch (or its last index + 1).
    """

    epoch: Epoch
    prev_index: LogIndex
    conflict_epoch: Epoch
    conflict_index: LogIndex
    seq: int


class InstallSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="install_snapshot"):
    """The sender's whole ledger after applying `index` (an entry of `last_epoch`): for a node
    that needs entries the sender has compacted. Sent by a leader to a follower, or by a fetch
    source to the recovering leader of `epoch`."""

    epoch: Epoch
    index: LogIndex
    last_epoch: Epoch
    state: LedgerState
    last_ts: Timestamp = ZERO  # the timestamp of the entry at `index`


class ClockProbe(msgspec.Struct, frozen=True, kw_only=True, tag="clock_probe"):
    """Any node -> any peer, every few ticks: my wall clock read `sent_ms` before sending this.

    Not part of replication: accepted whatever the epoch. `epoch` is the sender's promised one.
    """

    epoch: Epoch
    sent_ms: int


class ClockEcho(msgspec.Struct, frozen=True, kw_only=True, tag="clock_echo"):
    """The reply to a ClockProbe: my wall clock read `echo_ms` after your probe arrived.

    With the probe's send and the echo's arrival on the prober's clock, the peer's offset lies
    within [echo_ms - received, echo_ms - probe_ms] (the round trip bounds the error).
    """

    epoch: Epoch
    probe_ms: int
    echo_ms: int


class RefusalReason(StrEnum):
    STALE_EPOCH = "stale_epoch"


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag="refused"):
    """The receiver has promised `promised_epoch`, above the sender's epoch: the sender is stale."""

    epoch: Epoch  # the epoch the refused message carried
    promised_epoch: Epoch
    reason: RefusalReason = RefusalReason.STALE_EPOCH


Message = (Prepare | Promise | Fetch | FetchReply | Append | AppendAck | AppendNack | Refused
           | InstallSnapshot | ClockProbe | ClockEcho)


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag="hello"):
    """The first frame on a peer link: who is speaking, in which cluster, which protocol."""

    version: int
    cluster: str
    node: NodeId


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """One websocket message: a batch of messages from one sender, in send order, and the
    sender's hybrid logical clock and wall clock when it sent the last of them."""

    version: int
    messages: tuple[Message, ...]
    hlc: Timestamp = ZERO
    wall_ms: int = 0  # the sender's wall clock then (ms since the Unix epoch)


_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(Frame)
_hello_decoder = msgspec.msgpack.Decoder(Hello)


def encode(value: Frame | Hello) -> bytes:
    return _encoder.encode(value)


def decode_frame(data: bytes) -> Frame:
    """Raises msgspec.DecodeError / ValidationError on anything but a valid Frame."""
    return _frame_decoder.decode(data)


def decode_hello(data: bytes) -> Hello:
    return _hello_decoder.decode(data)
