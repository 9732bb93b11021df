"""What the driver feeds into the replica: facts, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

from quorapay.core.hlc import Timestamp
from quorapay.core.messages import Message, StreamMessage
from quorapay.core.types import Command, Epoch, LogIndex, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticked:
    """One tick of the driver's monotonic clock has passed. All core timing counts ticks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """A peer's message, with the sender's hybrid logical clock and wall clock (ms since the
    Unix epoch) when it sent it."""

    sender: NodeId
    message: Message | StreamMessage  # (a snapshot's parts are the NodeState's, not the replica's)
    hlc: Timestamp | None = None  # None: the sender stamps nothing (tests)
    wall_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockRead:
    """The node's wall clock read `wall_ms` (ms since the Unix epoch). Stepped by the driver
    before each batch of inputs: the core never reads a clock itself."""

    wall_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipGranted:
    """ZooKeeper elected this node and the epoch counter was advanced to `epoch` for it."""

    epoch: Epoch
    cause: str = ""  # why this node, now (for its log): handed over, or first in the queue


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipRevoked:
    """The ZooKeeper session that held leadership is gone (LOST): leadership is over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationSuspended:
    """The ZooKeeper connection is SUSPENDED: leadership may be lost; commit nothing new."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationResumed:
    """The ZooKeeper connection is CONNECTED again with the same session."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandsProposed:
    """Clients asked to append `commands` as one entry; `proposal` is the driver's token."""

    proposal: int
    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionRequested:
    """The driver wants the log forgotten up to `upto` (at most the applied index): the
    ledger's state already holds its effect."""

    upto: LogIndex


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequested:
    """A client wants a linearizable read; `read` is the driver's token."""

    read: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverRequested:
    """An operator asked this node, if it leads, to hand leadership to `to` (None: the most
    caught-up follower in contact); `request` is the driver's token."""

    request: int
    to: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotProgressed:
    """`sender` delivered another part of a snapshot in `epoch` (staged by the NodeState): a
    recovering leader fetching from it counts that as progress, not silence."""

    sender: NodeId
    epoch: Epoch


Input = (
    Ticked
    | ClockRead
    | MessageReceived
    | LeadershipGranted
    | LeadershipRevoked
    | CoordinationSuspended
    | CoordinationResumed
    | CommandsProposed
    | ReadRequested
    | CompactionRequested
    | SwitchoverRequested
    | SnapshotProgressed
)
