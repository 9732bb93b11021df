"""The znode layout under /quorapay/<cluster>/ and the typed contents of each znode (JSON).

Contents are read with `parse_*`, which return None for anything that is not a valid, in-range
value: what is in ZooKeeper is input, never trusted to be well-formed.
"""

from __future__ import annotations

import msgspec

from quorapay.core.bounds import Text
from quorapay.core.types import EpochField, NodeIdField


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """members/<node> (ephemeral): a live node and where to reach it."""

    node: NodeIdField
    peer_url: Text
    client_url: Text


class LeaderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """leader (ephemeral): created atomically with the epoch increment by the winner."""

    node: NodeIdField
    epoch: EpochField
    peer_url: Text
    client_url: Text


class EpochRecord(msgspec.Struct, frozen=True, kw_only=True):
    """epoch (persistent): the last epoch granted; advanced only by compare-and-set."""

    epoch: EpochField


class HandoverInfo(msgspec.Struct, frozen=True, kw_only=True):
    """handover (ephemeral, of the leader handing over): the leader of `epoch` gave it up for
    `to` (a switchover). While it stands and `epoch` is the last granted, the next in the
    election queue lets `to` claim first."""

    to: NodeIdField
    epoch: EpochField


class Layout:
    def __init__(self, cluster: str) -> None:
        self.parent = "/quorapay"  # shared by every cluster of one ZooKeeper ensemble
        self.root = f"{self.parent}/{cluster}"
        self.members = f"{self.root}/members"
        self.election = f"{self.root}/election"
        self.leader = f"{self.root}/leader"
        self.epoch = f"{self.root}/epoch"
        self.handover = f"{self.root}/handover"

    def member(self, node: str) -> str:
        return f"{self.members}/{node}"


def encode(value: MemberInfo | LeaderInfo | EpochRecord | HandoverInfo) -> bytes:
    return msgspec.json.encode(value)


_leader_decoder = msgspec.json.Decoder(LeaderInfo)
_epoch_decoder = msgspec.json.Decoder(EpochRecord)
_handover_decoder = msgspec.json.Decoder(HandoverInfo)


def parse_leader(data: bytes) -> LeaderInfo | None:
    try:
        return _leader_decoder.decode(data)
    except ValueError:  # msgspec.DecodeError, or a UnicodeDecodeError msgspec lets through
        return None


def parse_epoch(data: bytes) -> EpochRecord | None:
    try:
        return _epoch_decoder.decode(data)
    except ValueError:  # msgspec.DecodeError, or a UnicodeDecodeError msgspec lets through
        return None


def parse_handover(data: bytes) -> HandoverInfo | None:
    try:
        return _handover_decoder.decode(data)
    except ValueError:  # msgspec.DecodeError, or a UnicodeDecodeError msgspec lets through
        return None
