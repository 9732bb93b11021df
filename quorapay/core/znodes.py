"""The znode layout under /quorapay/<cluster>/ and the typed contents of each znode (JSON)."""

from __future__ import annotations

import msgspec

from quorapay.core.types import Epoch, NodeId


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """members/<node> (ephemeral): a live node and where to reach it."""

    node: NodeId
    peer_url: str
    client_url: str


class LeaderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """leader (ephemeral): created atomically with the epoch increment by the winner."""

    node: NodeId
    epoch: Epoch
    peer_url: str
    client_url: str


class EpochRecord(msgspec.Struct, frozen=True, kw_only=True):
    """epoch (persistent): the last epoch granted; advanced only by compare-and-set."""

    epoch: Epoch


class Layout:
    def __init__(self, cluster: str) -> None:
        self.root = f"/quorapay/{cluster}"
        self.members = f"{self.root}/members"
        self.election = f"{self.root}/election"
        self.leader = f"{self.root}/leader"
        self.epoch = f"{self.root}/epoch"

    def member(self, node: str) -> str:
        return f"{self.members}/{node}"


def encode(value: MemberInfo | LeaderInfo | EpochRecord) -> bytes:
    return msgspec.json.encode(value)


def decode_leader(data: bytes) -> LeaderInfo:
    return msgspec.json.decode(data, type=LeaderInfo)


def decode_epoch(data: bytes) -> EpochRecord:
    return msgspec.json.decode(data, type=EpochRecord)
