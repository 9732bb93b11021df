"""The batch of work the replica hands to its driver, and the order it MUST be done in.

Each Ready is produced by `Replica.ready()` and reported back by `Replica.advance(ready)`, in
the order produced, once its write and every earlier one are durable; the driver may step the
replica and take more Readys in between (writes are pipelined).
`quorapay.core.node_state.NodeState` takes each Ready into a unit of work (`next_work` /
`finish`), and `quorapay.core.executor.Executor` is the one place that carries it out in order
-- persist, then send, then answer -- for the node, the simulator and the tests alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.messages import InstallSnapshot, Message, StreamMessage
from quorapay.core.types import Epoch, LogEntry, LogIndex, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Make the log equal to: the durable entries up to `keep_upto`, then `entries`.

    With `install`, first replace everything -- log, ledger, applied index -- by the snapshot;
    with `compact_upto`, forget the log up to there (its effect is in the ledger already).
    """

    keep_upto: LogIndex  # delete every durable entry above this index
    entries: tuple[LogEntry, ...]  # then append these, in order
    promised_epoch: Epoch | None  # and, in the same transaction, raise the promised epoch
    promised_to: NodeId | None = None  # ... recording whom it was promised to (with it)
    install: InstallSnapshot | None = None
    compact_upto: LogIndex | None = None
    compact_epoch: Epoch | None = None  # the epoch of the entry at compact_upto
    compact_ts: Timestamp | None = None  # and its timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    to: NodeId
    message: Message | StreamMessage
    hlc: Timestamp = ZERO  # the sender's hybrid logical clock: stamp the frame with it
    wall_ms: int = 0  # and its wall clock
    # False: send at once, beside this Ready's write and any earlier one still in flight (the
    # messages of `messages.SEND_AT_ONCE`, which claim nothing about the sender's disk).
    after_persist: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotWanted:
    """Send `to` an InstallSnapshot of the ledger after applying `index` (the applied index
    once this Ready is handled), in `epoch`."""

    to: NodeId
    epoch: Epoch
    index: LogIndex
    last_epoch: Epoch  # the epoch of the entry at `index`
    last_ts: Timestamp = ZERO  # and its timestamp


class Unavailable(StrEnum):
    """Why a request could not be taken. All are retryable elsewhere or later."""

    NOT_LEADER = "not_leader"
    RECOVERING = "recovering"  # the leader has not committed its epoch-start entry yet
    SUSPENDED = "suspended"  # the leader's ZooKeeper connection is suspended
    NO_QUORUM = "no_quorum"
    HANDING_OVER = "handing_over"  # a switchover: the leader takes nothing new until it ends


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalAccepted:
    """The proposal is the entry (index, epoch); its results come when that entry is applied."""

    proposal: int
    index: LogIndex
    epoch: Epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalRejected:
    proposal: int
    reason: Unavailable
    leader: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadsConfirmed:
    """Serve these reads from state that includes every entry up to `index`."""

    reads: tuple[int, ...]
    index: LogIndex
    epoch: Epoch = Epoch(0)  # the epoch whose leadership a majority confirmed


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadsRejected:
    reads: tuple[int, ...]
    reason: Unavailable
    leader: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipEnded:
    """This node stopped leading. Outcomes of its pending proposals are now unknown.

    If `relinquish` is set the core decided this (lost its majority, or saw a newer epoch):
    the driver MUST give up the ZooKeeper leadership of `epoch` and rejoin the election.
    """

    epoch: Epoch
    reason: str
    relinquish: bool
    handover_to: NodeId | None = None  # a switchover: let this node claim first


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverAnswered:
    """The answer to SwitchoverRequested: handed over to `to` after `ticks` of refusing new
    requests; or not: `refusal` (this node does not lead, or not now), `invalid` (a target
    that cannot lead) or `gave_up` (the target did not catch up in time, or leadership ended
    for another reason first)."""

    request: int
    to: NodeId | None = None
    epoch: Epoch = Epoch(0)  # the epoch handed over
    ticks: int = 0
    refusal: Unavailable | None = None
    invalid: str = ""
    gave_up: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeOverAsked:
    """The leader of `epoch`, which this node follows, hands leadership to it: the driver MUST
    ask coordination to claim leadership now (ahead of its turn in the election queue)."""

    epoch: Epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockWarning:
    """Something about clocks an operator must hear of (the driver logs it): an alarm raised
    or cleared, timestamps refused from a peer or accepted again."""

    message: str
    alarm: bool  # True while the condition lasts
    subject: str = "clock"  # the condition: its raised and cleared warnings share it


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMisbehaved:
    """A peer sent a message that no correct node sends; it was dropped. The driver logs it (a
    simulation, where every node is correct, counts it as a violation)."""

    peer: NodeId
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderSilent:
    """A majority, this follower included, has heard nothing from `leader`, which leads
    `epoch`, for the leader-silence time: it cannot commit. The driver MUST ask coordination
    to depose it (remove its ZooKeeper leadership if it still holds `epoch`) so that the next
    candidate claims a new epoch now."""

    epoch: Epoch
    leader: NodeId
    agreeing: tuple[NodeId, ...]  # the majority that heard nothing, this node first


Outcome = (ProposalAccepted | ProposalRejected | ReadsConfirmed | ReadsRejected | LeadershipEnded
           | ClockWarning | PeerMisbehaved | SwitchoverAnswered | TakeOverAsked | LeaderSilent)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work. Handle the fields in the order listed."""

    persist: Persist | None  # 1. make durable (fsync), after every earlier Ready's write
    messages: tuple[Outgoing, ...]  # 2. send only AFTER step 1 and every earlier write are
    #                              durable (except after_persist=False: at once, beside them)
    committed: tuple[LogEntry, ...]  # 3. apply in index order, exactly once (may share 1's txn)
    outcomes: tuple[Outcome, ...]  # 4. AFTER 3: answer clients, act on leadership changes
    snapshots: tuple[SnapshotWanted, ...] = ()  # 2'. AFTER 3: send, like the messages
    hlc: Timestamp = ZERO  # the clock when this batch is sent: stamp the snapshots with it
    wall_ms: int = 0  # the wall clock then
