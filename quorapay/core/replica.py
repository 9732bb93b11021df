"""The replica state machine: follower, recovering leader, leader.

Theory of operation
-------------------
ZooKeeper decides who may lead and hands out strictly increasing epochs; this machine makes that
decision safe for the log. Three roles:

    FOLLOWER   --LeadershipGranted(E)------------------------------> RECOVERING(E)
    RECOVERING --majority promised E, best log adopted--------------> LEADER(E)
    RECOVERING | LEADER --revoked / newer epoch seen / no majority--> FOLLOWER

RECOVERING(E): raise the promised epoch to E (durably), ask every peer to promise E
(`Prepare`). Each `Promise` is sent only after the promise is durable and reports the
promiser's last entry. With a majority of promises (counting our own), adopt the most
up-to-date log among them, by (last epoch, last index), fetching what we lack after our commit
index. Then append an `EpochStart` entry of epoch E and become LEADER.

LEADER(E): append proposals as entries of epoch E and replicate them with pipelined `Append`s
carrying a (prev_index, prev_epoch) consistency check. An index is committed once a majority
(counting ourselves) holds it durably and the entry there has epoch E; earlier entries commit with
it. Clients are served only after the EpochStart entry commits. A leader that hears from no
majority for `election_timeout_ticks` steps down and asks its driver to give up ZooKeeper
leadership. While ZooKeeper is SUSPENDED the leader takes no proposals and commits nothing new.

FOLLOWER: refuse every message of an epoch below the promised one; adopt a higher epoch (durably)
when one arrives. Append entries after a successful consistency check, truncating only at a
conflicting entry (an entry that conflicts with the leader's is never committed), and
acknowledge only what will be durable before the reply is sent (the Ready contract).

Durability is an input, as in etcd-raft's asynchronous storage writes: the driver takes each
Ready's write (`Persist`) and may go on stepping inputs and taking Readys while earlier writes
are in flight; it reports each Ready back with `advance`, in the order they were produced, once
that Ready's write and every earlier one are durable. The replica keeps two marks: what the
disk will hold once the writes handed out so far land (`_written_*`, from which the next Persist
is cut), and what is known durable (`_durable_*`, which alone counts: a leader's own vote for
commit, a recovering leader's own promise). A truncation while writes are in flight lowers both.

Switchover (SwitchoverRequested): a leader hands leadership to a chosen follower without
leaving a client unsure. It refuses new requests (HANDING_OVER, retryable), and once every
entry is committed and applied (every accepted write answered), no read waits, and the target's
match index is its last index, it sends the target `TakeOver`, answers SwitchoverAnswered, and
ends its leadership with `relinquish` naming the target (`handover_to`), which its coordinator
lets claim first. A target not caught up within `handover_ticks` is given up on, and the leader
takes requests again. A follower told `TakeOver` by the leader it follows in its promised epoch
reports TakeOverAsked; its driver has coordination claim leadership now.

Compaction and snapshots: on request the log forgets applied entries (their effect is in the
ledger). A leader that must send a follower entries it no longer holds asks its driver to send an
InstallSnapshot of the ledger instead, then replicates from the snapshot's index; a follower
installs a snapshot above its commit index (replacing its log and ledger) and acknowledges it. A
recovering leader fetching from a source that compacted past what it asked for installs the
source's snapshot the same way, then fetches the rest. Entries at or below a node's compaction
point are committed, so they match every leader's.

Time: the leader stamps every entry with its hybrid logical clock (`core/hlc.py`) as it appends
it, and a new leader first moves its clock past the last timestamp of the log it adopted, so
timestamps strictly increase with the index whatever the wall clocks do. Every message carries the
sender's HLC and wall clock: a message sent by a wall clock more than the maximum offset ahead of
ours is refused (dropped, and reported once per peer), so a wild leader's entries never commit;
an HLC more than that ahead is not adopted. Clock probes (`core/clock_sync.py`) measure every
peer's offset; a node off from a majority raises an alarm, refuses leadership, and steps down if
it leads; a node whose HLC ran ahead of its own wall clock by more than the bound does not stand
for election until real time catches up. Nothing about commit order depends on clocks: only the
timestamps' wall-clock part does.

Promises name their leader: a node records, durably and with the promised epoch, whom it
promised it to (itself when granted), as Raft records `votedFor`, and refuses (EPOCH_TAKEN) any
other node claiming that same epoch. ZooKeeper's compare-and-set counter already makes grants
unique; this keeps two leaders of one epoch apart even if that counter is lost or rewritten
(the coordinator then repairs it from the highest epoch it has seen, which may repeat one).

Peers are trusted to follow the protocol, not to be well-formed: a message that would break an
invariant here (truncate a committed entry, a log whose epochs go down, a promise that ends below
our commit index) is dropped and reported as `PeerMisbehaved`, never raised.

Invariants kept: the promised epoch never decreases; a node answers at most one leader per
epoch; epochs never decrease along a log; an entry at or below the commit index is never
truncated (LocalError if it would be: that is a bug, not a runtime condition); committed entries
are handed out for application exactly once, in index order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from quorapay.core.clock_sync import ClockSync, OffsetSample
from quorapay.core.errors import LocalError
from quorapay.core.hlc import ZERO, HybridClock, Timestamp
from quorapay.core.inputs import (
    ClockRead,
    CommandsProposed,
    CompactionRequested,
    CoordinationResumed,
    CoordinationSuspended,
    Input,
    LeadershipGranted,
    LeadershipRevoked,
    MessageReceived,
    ReadRequested,
    SnapshotProgressed,
    SwitchoverRequested,
    Ticked,
)
from quorapay.core.log import Log
from quorapay.core.messages import (
    SEND_AT_ONCE,
    Append,
    AppendAck,
    AppendNack,
    ClockEcho,
    ClockProbe,
    Fetch,
    FetchReply,
    InstallSnapshot,
    Message,
    Prepare,
    Promise,
    RefusalReason,
    Refused,
    SilenceQuery,
    SilenceReport,
    StreamMessage,
    TakeOver,
)
from quorapay.core.progress import Progress
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
    SnapshotWanted,
    SwitchoverAnswered,
    TakeOverAsked,
    Unavailable,
)
from quorapay.core.recovery import Fetching, Recovery, Tail
from quorapay.core.timing import Timing
from quorapay.core.types import (
    Command,
    Commands,
    Epoch,
    EpochStart,
    LogEntry,
    LogIndex,
    NodeId,
)


class Role(StrEnum):
    FOLLOWER = "follower"
    RECOVERING = "recovering"
    LEADER = "leader"


@dataclass(slots=True, kw_only=True)
class _Handover:
    """A switchover under way: take nothing new; hand over once `to` holds every entry."""

    request: int
    to: NodeId
    started: int  # tick


@dataclass(slots=True, kw_only=True)
class _Write:
    """A Ready's write, handed to the driver and not yet reported durable: once it lands, the
    disk holds the log as it was then (through `last_index`), which agrees with the log now up
    to `floor` (lowered by every truncation since), and the promise as it was then."""

    ready: Ready
    last_index: LogIndex
    floor: LogIndex
    promised: Epoch
    promised_to: NodeId | None
    since: int  # the tick it was handed out


class Replica:
    """One node's replication state. Feed it with `step`, drain it with `ready`/`advance`."""

    def __init__(
        self,
        *,
        node_id: NodeId,
        members: Sequence[NodeId],
        timing: Timing,
        promised_epoch: Epoch = Epoch(0),
        promised_to: NodeId | None = None,
        log: Sequence[LogEntry] = (),
        applied_index: LogIndex = LogIndex(0),
        snapshot_index: LogIndex = LogIndex(0),
        snapshot_epoch: Epoch = Epoch(0),
        snapshot_ts: Timestamp = ZERO,
    ) -> None:
        if node_id not in members or len(set(members)) != len(members):
            raise LocalError("members must be distinct and include this node")
        self.node_id = node_id
        self._peers = tuple(m for m in members if m != node_id)
        self._quorum = len(members) // 2 + 1
        self._timing = timing
        self._log = Log(log, start=snapshot_index, start_epoch=snapshot_epoch,
                        start_ts=snapshot_ts)
        if not snapshot_index <= applied_index <= self._log.last_index:
            raise LocalError(f"applied index {applied_index} outside the log "
                             f"{snapshot_index}..{self._log.last_index}")
        # durability: what the disk holds once the writes handed out land (written), and what
        # the driver reported durable (durable); memory agrees with each up to its `upto`
        self._written_last = self._log.last_index  # the disk's last index, once they land
        self._written_upto = self._log.last_index
        self._written_promise = promised_epoch
        self._written_promised_to = promised_to
        self._durable_upto = self._log.last_index
        self._durable_promise = promised_epoch
        self._writes: deque[_Write] = deque()  # handed out, not yet reported durable (FIFO)
        self._promised = promised_epoch
        self._promised_to = promised_to  # whom the promised epoch was promised to (None: unknown)
        self._install: InstallSnapshot | None = None  # a snapshot to make durable
        self._compaction: LogIndex | None = None  # a compaction to make durable
        # commit and apply: everything applied was committed, so it is the safe restart point
        self._commit = applied_index
        self._handed_out = applied_index
        self._held_since: int | None = None  # a follower: tick since when it holds entries back
        self._verified = LogIndex(0)  # follower: matched the current leader's log up to here
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self._heard_leader = 0  # tick of the last message accepted from the leader followed
        # leader silence: the current round of SilenceQuery (its tick), who agreed, whether a
        # majority was reported
        self._silence_round: int | None = None
        self._silent_peers: set[NodeId] = set()
        self._silence_reported = False
        self.highest_epoch_seen = promised_epoch
        self.suspended = False
        self._now = 0
        # time: the wall clock as last read by the driver, the HLC, the peers' clock offsets
        self._wall = 0
        self._clock = HybridClock(max_offset_ms=timing.max_clock_offset_ms,
                                  start=self._log.last_ts)
        self._sync = ClockSync(self._peers, quorum=self._quorum,
                               max_offset_ms=timing.max_clock_offset_ms,
                               probe_ticks=timing.clock_probe_ticks)
        self.clock_alarm = False  # our wall clock is off from a majority
        self.hlc_ahead = False  # our HLC is ahead of our wall clock by more than the bound
        self.refused_messages = 0  # dropped: sent by a wall clock too far ahead of ours
        self.unadopted_timestamps = 0  # HLCs too far ahead of our wall clock, not adopted
        self._refusing: set[NodeId] = set()
        self._not_adopting: set[NodeId] = set()
        # leadership state (RECOVERING / LEADER)
        self._epoch = Epoch(0)
        self._recovery: Recovery | None = None
        self._progress: dict[NodeId, Progress] = {}
        self._epoch_start = LogIndex(0)
        self._hb_seq = 0
        self._last_heartbeat = 0
        self._reads: list[tuple[int, LogIndex, int]] = []  # (read, index at request, seq needed)
        self._read_round_needed = False
        self._commit_notice = False
        self._handover: _Handover | None = None
        # output
        self._snapshot_requests: list[tuple[NodeId, Epoch]] = []
        self._outbox: list[Outgoing] = []
        self._outcomes: list[Outcome] = []
        self._dirty = False
        self._unadvanced: deque[Ready] = deque()  # handed out, not yet advance()d (FIFO)

    # ----------------------------------------------------------------- read-only status

    @property
    def timing(self) -> Timing:
        return self._timing

    @property
    def promised_epoch(self) -> Epoch:
        return self._promised

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return self._peers

    @property
    def promised_to(self) -> NodeId | None:
        """The node the promised epoch was promised to (this node, if granted it)."""
        return self._promised_to

    @property
    def epoch(self) -> Epoch:
        """The epoch this node leads in, or 0 when it does not lead."""
        return self._epoch

    @property
    def last_index(self) -> LogIndex:
        return self._log.last_index

    @property
    def last_epoch(self) -> Epoch:
        return self._log.last_epoch

    @property
    def commit_index(self) -> LogIndex:
        return self._commit

    @property
    def applied_index(self) -> LogIndex:
        return self._handed_out

    @property
    def serving(self) -> bool:
        """True while this node is a leader that may take client requests."""
        return self.role is Role.LEADER and self._commit >= self._epoch_start and not self.suspended

    @property
    def log(self) -> Log:
        return self._log

    @property
    def hlc(self) -> Timestamp:
        """The latest hybrid logical clock value this node issued or saw."""
        return self._clock.last

    @property
    def wall_ms(self) -> int:
        return self._wall

    def clock_offsets(self) -> dict[NodeId, OffsetSample]:
        """Each peer's clock minus ours, as last measured (peers not measured lately omitted)."""
        return self._sync.offsets(self._now)

    @property
    def refusing_messages_from(self) -> list[NodeId]:
        return sorted(self._refusing)

    @property
    def ticks_since_leader(self) -> int | None:
        """A follower: ticks since it last accepted a message from the leader it follows
        (None while it follows none). Read by status; decides nothing."""
        if self.role is not Role.FOLLOWER or self.leader is None:
            return None
        return self._now - self._heard_leader

    @property
    def ticks_since_majority(self) -> int | None:
        """A leader (or recovering one): ticks since a majority, itself included, last
        answered (None on a follower). Read by status; decides nothing."""
        if self.role is Role.FOLLOWER:
            return None
        quiet = sorted(self._now - p.last_heard for p in self._progress.values())
        return quiet[self._quorum - 2] if self._quorum >= 2 and quiet else 0

    @property
    def eligible(self) -> bool:
        """Whether this node should stand for election (its clocks allow it to lead)."""
        return not self.clock_alarm and not self.hlc_ahead

    # ----------------------------------------------------------------- the driver contract

    def step(self, event: Input) -> None:
        """Feed one input (also while Readys are out, their writes in flight)."""
        match event:
            case Ticked():
                self._on_tick()
            case ClockRead(wall_ms=wall_ms):
                self._wall = wall_ms
                self._check_hlc_ahead()
            case MessageReceived(sender=sender, message=message, hlc=hlc, wall_ms=wall_ms):
                if sender in self._peers and not isinstance(message, StreamMessage):
                    self._on_received(sender, message, hlc, wall_ms)
            case SnapshotProgressed(sender=sender, epoch=epoch):
                self._on_snapshot_progress(sender, epoch)
            case LeadershipGranted(epoch=epoch):
                self._on_granted(epoch)
            case LeadershipRevoked():
                if self.role is not Role.FOLLOWER:
                    self._end_leadership("ZooKeeper session lost", relinquish=False)
            case CoordinationSuspended():
                self.suspended = True
            case CoordinationResumed():
                self.suspended = False
                self._maybe_commit()
            case CommandsProposed(proposal=proposal, commands=commands):
                self._on_proposed(proposal, commands)
            case ReadRequested(read=read):
                self._on_read(read)
            case CompactionRequested(upto=upto):
                self._on_compaction(upto)
            case SwitchoverRequested(request=request, to=to):
                self._on_switchover(request, to)
            case _:
                assert_never(event)
        self._dirty = True

    def has_ready(self) -> bool:
        return bool(self._dirty or self._outbox or self._outcomes
                    or self._read_round_needed or self._persist_needed()
                    or self._snapshot_requests
                    or (self._commit > self._handed_out and not self._holding_back()))

    @property
    def writes_in_flight(self) -> int:
        """Readys whose write was handed out and not yet reported durable."""
        return len(self._writes)

    def ready(self) -> Ready:
        """Collect the work produced since the last ready(). Every Ready must come back, in
        order, through advance() once its write and every earlier one are durable."""
        if self._commit > self._handed_out and not self._log.holds(self._handed_out + 1):
            # a broken invariant (committed entries cut from the log): fail loudly rather than
            # hand the driver empty work for ever
            raise LocalError(f"commit index {self._commit} is beyond the log "
                             f"({self._log.start + 1}..{self._log.last_index})")
        self._flush()
        stamp = self._clock.now(self._wall) if self._outbox or self._snapshot_requests \
            else self._clock.last
        persist = None
        if self._persist_needed():
            persist = Persist(
                keep_upto=self._written_upto,
                entries=self._log.slice(self._written_upto + 1, self._log.last_index),
                promised_epoch=self._promised if self._promise_changed() else None,
                promised_to=self._promised_to if self._promise_changed() else None,
                install=self._install,
                compact_upto=self._compaction,
                compact_epoch=self._log.start_epoch if self._compaction is not None else None,
                compact_ts=self._log.start_ts if self._compaction is not None else None,
            )
        last_committed = LogIndex(self._handed_out if self._holding_back() else min(
            self._commit, self._handed_out + self._timing.max_apply_batch))
        self._held_since = None if last_committed == self._commit else self._held_since
        ready = Ready(
            persist=persist,
            messages=tuple(Outgoing(to=o.to, message=o.message, hlc=stamp, wall_ms=self._wall,
                                    after_persist=not isinstance(o.message, SEND_AT_ONCE))
                           for o in self._outbox),
            committed=self._log.slice(self._handed_out + 1, last_committed),
            outcomes=tuple(self._outcomes),
            snapshots=self._snapshots_at(last_committed),
            hlc=stamp, wall_ms=self._wall,
        )
        self._outbox.clear()
        self._outcomes.clear()
        self._dirty = False
        if persist is not None:
            self._writes.append(_Write(ready=ready, last_index=self._log.last_index,
                                       floor=self._log.last_index, promised=self._promised,
                                       promised_to=self._promised_to, since=self._now))
            self._written_last = self._written_upto = self._log.last_index
            self._written_promise, self._written_promised_to = self._promised, self._promised_to
            self._install = None
            self._compaction = None
        if ready.committed:
            self._handed_out = ready.committed[-1].index
        self._unadvanced.append(ready)
        return ready

    def advance(self, ready: Ready) -> None:
        """`ready`'s write, and every earlier one, is durable; the driver sent and answered
        what had to wait for it. Readys come back in the order ready() produced them."""
        if not self._unadvanced or ready is not self._unadvanced[0]:
            raise LocalError("advance() with a Ready that is not the oldest one out")
        self._unadvanced.popleft()
        if ready.persist is not None:
            write = self._writes.popleft()
            if write.ready is not ready:
                raise LocalError("advance() of a Ready whose write is not the oldest in flight")
            self._durable_upto = LogIndex(min(write.last_index, write.floor))
            self._durable_promise = write.promised
        if self.role is Role.RECOVERING:
            self._maybe_finish_promises()
        elif self.role is Role.LEADER and ready.persist is not None:
            self._maybe_commit()
        self._maybe_hand_over()

    # ----------------------------------------------------------------- inputs

    def _on_tick(self) -> None:
        self._now += 1
        if self._sync.due(self._now):
            self._tick_clock()
        if self.role is Role.FOLLOWER:
            self._tick_silence()
            if self._commit > self._handed_out and self._held_since is None:
                self._held_since = self._now
            return
        if not self._has_majority_contact():
            self._end_leadership(
                "no reply from a majority within the election timeout",
                relinquish=True)
            return
        if self._writes and self._now - self._writes[0].since >= self._timing.write_stall_ticks:
            # Its heartbeats need no disk, so nobody else can tell that it no longer writes.
            self._end_leadership("its disk completed no write within the write-stall time",
                                 relinquish=True)
            return
        if self.role is Role.RECOVERING:
            self._tick_recovery()
            return
        if self._now - self._last_heartbeat >= self._timing.heartbeat_ticks:
            self._send_heartbeats()
        elif self._commit_notice:
            self._send_commit_notices()
        self._tick_handover()
        for progress in self._progress.values():
            stalled = self._now - progress.last_progress >= self._timing.retransmit_ticks
            if stalled and progress.match_index < self._log.last_index:
                # A lost probe is resent where it was; lost pipelined Appends from the match.
                resume = progress.probe_prev + 1 if progress.probing else progress.match_index + 1
                progress.rewind(max(resume, progress.match_index + 1), self._now)

    def _on_granted(self, epoch: Epoch) -> None:
        if epoch == self._epoch and self.role is not Role.FOLLOWER:
            return  # the same grant reported again (a coordination retry): nothing changes
        if not self.eligible:
            self._outcomes.append(LeadershipEnded(
                epoch=epoch, relinquish=True,
                reason="this node's clock is off from a majority of the cluster" if
                self.clock_alarm else "this node's timestamps run ahead of its clock"))
            return
        if epoch <= self._promised:
            self.highest_epoch_seen = max(self.highest_epoch_seen, self._promised)
            self._outcomes.append(LeadershipEnded(
                epoch=epoch, relinquish=True,
                reason=f"granted epoch {epoch} is not above promised epoch {self._promised}"))
            return
        if self.role is not Role.FOLLOWER:
            self._end_leadership("granted a new epoch", relinquish=False)
        self._raise_promise(epoch, self.node_id)
        self.role = Role.RECOVERING
        self._epoch = epoch
        self.leader = self.node_id
        self._recovery = Recovery(epoch=epoch, quorum=self._quorum, progress_at=self._now)
        self._progress = {p: Progress(next_index=LogIndex(self._log.last_index + 1),
                                      last_heard=self._now, last_progress=self._now)
                          for p in self._peers}
        for peer in self._peers:
            self._send(peer, Prepare(epoch=epoch))

    def _on_proposed(self, proposal: int, commands: tuple[Command, ...]) -> None:
        refusal = self._refusal()
        if refusal is not None:
            self._outcomes.append(ProposalRejected(proposal=proposal, reason=refusal,
                                                   leader=self.leader))
            return
        index = LogIndex(self._log.last_index + 1)
        self._log.append(LogEntry(index=index, epoch=self._epoch,
                                  payload=Commands(commands=commands),
                                  ts=self._clock.now(self._wall)))
        self._outcomes.append(ProposalAccepted(proposal=proposal, index=index, epoch=self._epoch))

    def _on_compaction(self, upto: LogIndex) -> None:
        """Forget applied entries: the ledger on disk holds their effect."""
        upto = LogIndex(min(upto, self._handed_out, self._durable_upto))
        if upto > self._log.start:
            self._log.compact(upto)
            self._compaction = upto

    def _on_read(self, read: int) -> None:
        refusal = self._refusal()
        if refusal is not None:
            self._outcomes.append(ReadsRejected(reads=(read,), reason=refusal, leader=self.leader))
            return
        self._reads.append((read, self._commit, self._hb_seq + 1))
        self._read_round_needed = True

    def _refusal(self) -> Unavailable | None:
        """Why this node cannot take a client request now, or None if it can."""
        if self.role is Role.FOLLOWER:
            return Unavailable.NOT_LEADER
        if self.suspended:
            return Unavailable.SUSPENDED
        if not self.serving:
            return Unavailable.RECOVERING
        if self._handover is not None:
            return Unavailable.HANDING_OVER
        return None

    # ----------------------------------------------------------------- time

    def _tick_clock(self) -> None:
        for peer, probe in self._sync.probes(self._promised, self._wall):
            self._send(peer, probe)
        self._check_hlc_ahead()
        skewed = self._sync.skewed(self._now)
        if skewed == self.clock_alarm:
            return
        self.clock_alarm = skewed
        if skewed:
            off = ", ".join(f"{p} {s.offset_ms:+.0f} ms" for p, s in
                            self._sync.offsets(self._now).items())
            self._outcomes.append(ClockWarning(alarm=True, subject="majority", message=(
                f"clock alarm: this node's clock is more than {self._clock.max_offset_ms} ms "
                f"from a majority of the cluster (peers: {off}); it will not lead")))
            if self.role is not Role.FOLLOWER:
                self._end_leadership("this node's clock is off from a majority of the cluster",
                                     relinquish=True)
        else:
            self._outcomes.append(ClockWarning(alarm=False, subject="majority", message=(
                "clock alarm cleared: this node's clock is within "
                f"{self._clock.max_offset_ms} ms of a majority of the cluster")))

    def _check_hlc_ahead(self) -> None:
        if not self._wall:
            return  # the driver has not read the wall clock yet
        ahead = self._clock.last.wall_ms - self._wall
        if (ahead > self._clock.max_offset_ms) == self.hlc_ahead:
            return
        self.hlc_ahead = not self.hlc_ahead
        self._outcomes.append(ClockWarning(alarm=self.hlc_ahead, subject="hlc", message=(
            f"this node's hybrid logical clock is {ahead} ms ahead of its wall clock (which "
            "jumped back, or timestamps came from a clock that ran ahead): it will not stand "
            "for election until real time catches up" if self.hlc_ahead else
            "this node's hybrid logical clock is back within the maximum offset of its wall "
            "clock: it stands for election again")))

    def _on_received(self, sender: NodeId, message: Message, hlc: Timestamp | None,
                     wall_ms: int | None) -> None:
        """Refuse a sender whose wall clock is too far ahead of ours; advance our HLC past the
        sender's unless that is too far ahead."""
        adopted = hlc is None or self._clock.observe(hlc, self._wall)
        max_offset = self._clock.max_offset_ms
        too_far = wall_ms is not None and wall_ms - self._wall > max_offset
        if isinstance(message, ClockProbe | ClockEcho):  # measured, never refused
            if isinstance(message, ClockProbe):
                self._send(sender, self._sync.echo(message, self._promised, self._wall))
            else:
                self._sync.on_echo(sender, message, self._wall, self._now)
                if not too_far:
                    self._heard_echo(sender, message)
            if not too_far:
                self._track(self._refusing, sender, False, "", f"accepting messages from "
                            f"{sender} again: its clock is within {max_offset} ms of ours")
            return
        if too_far:
            assert wall_ms is not None
            self.refused_messages += 1
            self._track(self._refusing, sender, True,
                        f"refusing messages from {sender}: sent by a clock "
                        f"{wall_ms - self._wall} ms ahead of this node's, beyond the "
                        f"{max_offset} ms maximum offset",
                        f"accepting messages from {sender} again: its clock is within "
                        f"{max_offset} ms of ours")
            return
        self._track(self._refusing, sender, False, "", f"accepting messages from {sender} "
                    f"again: its clock is within {max_offset} ms of ours")
        if not adopted:
            assert hlc is not None
            self.unadopted_timestamps += 1
        self._track(self._not_adopting, sender, not adopted,
                    f"not adopting timestamps from {sender}: {hlc} is more than {max_offset} "
                    "ms ahead of this node's clock",
                    f"adopting timestamps from {sender} again")
        self._on_message(sender, message)

    def _heard_echo(self, sender: NodeId, echo: ClockEcho) -> None:
        """A leader's own probe answered by a follower that promised its epoch: in contact.
        Echoes leave at once, so a follower whose replies wait on a slow disk still counts,
        and a disk stall across the cluster does not make the leader step down."""
        progress = self._progress.get(sender)
        if progress is not None and echo.epoch == self._epoch:
            progress.last_heard = self._now

    def _track(self, peers: set[NodeId], sender: NodeId, now: bool, raised: str,
               cleared: str) -> None:
        """Record whether a condition holds for `sender`; report it when it changes."""
        what = "refusing" if peers is self._refusing else "not adopting"
        if now == (sender in peers):
            return
        if now:
            peers.add(sender)
        else:
            peers.discard(sender)
        self._outcomes.append(ClockWarning(alarm=now, subject=f"{what} {sender}",
                                           message=raised if now else cleared))

    # ----------------------------------------------------------------- messages

    def _on_message(self, sender: NodeId, message: Message) -> None:
        if message.epoch < self._promised and isinstance(
                message, Prepare | Append | Fetch | InstallSnapshot):
            self._send(sender, Refused(epoch=message.epoch, promised_epoch=self._promised))
            return
        match message:
            case Prepare(epoch=epoch):
                self._on_prepare(sender, epoch)
            case Append():
                self._on_append(sender, message)
            case Fetch(epoch=epoch, from_index=from_index):
                self._on_fetch(sender, epoch, from_index)
            case InstallSnapshot():
                if self.role is Role.RECOVERING and message.epoch == self._epoch:
                    self._on_fetched_snapshot(sender, message)
                elif self._follow(sender, message.epoch):
                    self._on_install(sender, message)
            case Promise() | FetchReply() | AppendAck() | AppendNack():
                if message.epoch == self._epoch and self.role is not Role.FOLLOWER:
                    self._on_reply(sender, message)
            case ClockProbe() | ClockEcho():
                pass  # handled in _on_received
            case SilenceQuery(epoch=epoch):
                self._send(sender, SilenceReport(epoch=epoch, silent=self._silent_about(epoch)))
            case SilenceReport(epoch=epoch, silent=silent):
                if silent:
                    self._on_silence_agreed(sender, epoch)
            case TakeOver(epoch=epoch):
                if self.role is Role.FOLLOWER and epoch == self._promised \
                        and self._promised_to == sender and self.eligible:
                    self._outcomes.append(TakeOverAsked(epoch=epoch))
            case Refused(promised_epoch=promised, reason=RefusalReason.EPOCH_TAKEN):
                if promised == self._epoch and self.role is not Role.FOLLOWER:
                    self.highest_epoch_seen = max(self.highest_epoch_seen, promised)
                    self._end_leadership(f"{sender} promised epoch {promised} to another node",
                                         relinquish=True)
            case Refused(promised_epoch=promised):
                if promised > self._epoch and self.role is not Role.FOLLOWER:
                    self.highest_epoch_seen = max(self.highest_epoch_seen, promised)
                    self._end_leadership(f"a peer promised newer epoch {promised}",
                                         relinquish=True)
            case _:
                assert_never(message)

    def _holding_back(self) -> bool:
        """A follower holds committed entries back -- they leave with its next write (one
        transaction for both), or after apply_hold_ticks -- unless there are many."""
        if self.role is not Role.FOLLOWER or not self._timing.apply_hold_ticks \
                or self._persist_needed() \
                or self._commit - self._handed_out >= self._timing.max_apply_batch:
            return False
        return self._held_since is None or \
            self._now - self._held_since < self._timing.apply_hold_ticks

    # ----------------------------------------------------------------- leader silence

    def _tick_silence(self) -> None:
        """A follower whose leader has been silent for silence_ticks asks the other followers
        whether they heard from it, once per heartbeat interval while the silence lasts."""
        quiet = self.ticks_since_leader
        if not self._timing.silence_ticks or quiet is None or quiet < self._timing.silence_ticks:
            return
        if self._silence_round is not None and \
                self._now - self._silence_round < self._timing.heartbeat_ticks:
            return
        self._silence_round = self._now
        self._silent_peers = set()
        self._silence_reported = False
        for peer in self._peers:
            if peer != self.leader:
                self._send(peer, SilenceQuery(epoch=self._promised))

    def _silent_about(self, epoch: Epoch) -> bool:
        """Whether this node agrees that the leader of `epoch` is silent: it promised another
        epoch (so that leader cannot count on it), or it follows that epoch and has heard
        nothing from a leader for half the silence time. A leader never agrees."""
        if epoch != self._promised:
            return True
        if self.role is not Role.FOLLOWER:
            return False
        # (following no one yet -- just restarted, say: the time since it started)
        return 2 * (self._now - self._heard_leader) >= self._timing.silence_ticks

    def _on_silence_agreed(self, sender: NodeId, epoch: Epoch) -> None:
        """A follower agreed: with a majority (this node included), report the leader."""
        quiet = self.ticks_since_leader
        if self._silence_round is None or epoch != self._promised or sender == self.leader \
                or quiet is None or quiet < self._timing.silence_ticks:
            return  # an answer to an earlier silence, since broken
        self._silent_peers.add(sender)
        if self._silence_reported or 1 + len(self._silent_peers) < self._quorum:
            return
        assert self.leader is not None
        self._silence_reported = True
        self._outcomes.append(LeaderSilent(epoch=self._promised, leader=self.leader,
                                           agreeing=(self.node_id, *sorted(self._silent_peers))))

    def _follow(self, sender: NodeId, epoch: Epoch) -> bool:
        """Accept `sender` as leader of `epoch` (>= promised). False, refusing it, if that epoch
        was promised to another node (ourselves included)."""
        if epoch > self._promised:
            if self.role is not Role.FOLLOWER:
                self._end_leadership(f"saw newer epoch {epoch}", relinquish=True)
            self._raise_promise(epoch, sender)
        elif self._promised_to is None and self.role is Role.FOLLOWER:
            self._promised_to = sender  # promised before promises named their leader
        elif self._promised_to != sender:
            self._send(sender, Refused(epoch=epoch, promised_epoch=self._promised,
                                       reason=RefusalReason.EPOCH_TAKEN))
            return False
        self.leader = sender
        self._heard_leader = self._now
        return True

    def _on_prepare(self, sender: NodeId, epoch: Epoch) -> None:
        if self._follow(sender, epoch):
            self._send(sender, Promise(epoch=epoch, last_index=self._log.last_index,
                                       last_epoch=self._log.last_epoch,
                                       log_start=self._log.start, last_ts=self._log.last_ts))

    def _on_fetch(self, sender: NodeId, epoch: Epoch, from_index: LogIndex) -> None:
        if not self._follow(sender, epoch):
            return
        if from_index <= self._log.start:  # compacted: the ledger's state stands in for them
            self._snapshot_requests.append((sender, epoch))
        else:
            entries = self._log.take(from_index, self._timing.max_append_weight)
            self._send(sender, FetchReply(epoch=epoch, from_index=from_index, entries=entries,
                                          last_index=self._log.last_index))

    def _on_install(self, sender: NodeId, snapshot: InstallSnapshot) -> None:
        """A leader's snapshot: everything up to its index is committed."""
        if snapshot.index > self._commit and \
                self._log.epoch_at(snapshot.index) != snapshot.last_epoch:
            self._install_snapshot(snapshot)
        # Either we installed it or we hold entries up to its index that match it (same index
        # and epoch: the same prefix); in both cases they are committed.
        self._verified = max(self._verified, snapshot.index)
        self._commit = max(self._commit, snapshot.index)
        self._send(sender, AppendAck(epoch=snapshot.epoch, match_index=snapshot.index, seq=0))

    def _install_snapshot(self, snapshot: InstallSnapshot) -> None:
        """Replace log and ledger by the snapshot; entries after its index are dropped."""
        self._log.reset(snapshot.index, snapshot.last_epoch, snapshot.last_ts)
        self._clock.witness(snapshot.last_ts)
        self._outbox = [o for o in self._outbox
                        if not _describes_beyond(o.message, snapshot.index)]
        self._commit = self._handed_out = self._written_upto = snapshot.index
        # Until the snapshot is on disk, what earlier writes leave there is not this log.
        self._lower_durable(LogIndex(0))
        self._install = snapshot
        self._compaction = None

    def _on_append(self, sender: NodeId, append: Append) -> None:
        if not self._follow(sender, append.epoch):
            return
        if not _contiguous(append.prev_index, append.entries) or any(
                e.epoch > append.epoch for e in append.entries):
            return  # malformed: ignore; the leader will retransmit
        prev_index, entries = append.prev_index, append.entries
        if prev_index < self._log.start:
            # Our log up to its start is committed, so equal to the leader's: skip that part.
            prev_index = self._log.start
            entries = tuple(e for e in entries if e.index > prev_index)
        elif self._log.epoch_at(prev_index) != append.prev_epoch:
            self._send(sender, self._mismatch(append))
            return
        if not self._merge(sender, entries):
            return
        match_index = LogIndex(prev_index + len(entries))
        self._verified = max(self._verified, match_index)
        self._commit = max(self._commit, min(append.commit, self._verified))
        self._send(sender, AppendAck(epoch=append.epoch, match_index=match_index, seq=append.seq))

    def _mismatch(self, append: Append) -> AppendNack:
        at = self._log.epoch_at(append.prev_index)
        if at is None:
            return AppendNack(epoch=append.epoch, prev_index=append.prev_index,
                              conflict_epoch=Epoch(0),
                              conflict_index=LogIndex(self._log.last_index + 1), seq=append.seq)
        return AppendNack(epoch=append.epoch, prev_index=append.prev_index, conflict_epoch=at,
                          conflict_index=self._log.first_index_of_run(append.prev_index),
                          seq=append.seq)

    def _merge(self, sender: NodeId, entries: Sequence[LogEntry]) -> bool:
        """Append entries that follow a matching prefix, truncating at the first conflict.
        False, keeping what was merged so far, at an entry no correct leader would send."""
        for entry in entries:
            existing = self._log.epoch_at(entry.index)
            if existing == entry.epoch:
                continue  # same index and epoch: the same entry (log matching)
            if existing is not None and entry.index <= self._commit:
                return self._misbehaved(sender, f"entry {entry.index} of epoch {entry.epoch} "
                                        f"conflicts with committed entry of epoch {existing}")
            if entry.index != self._log.last_index + 1 and existing is None:
                return self._misbehaved(sender, f"entry {entry.index} leaves a gap after "
                                        f"{self._log.last_index}")
            previous = self._log.epoch_at(entry.index - 1)
            if previous is None or entry.epoch < previous:
                return self._misbehaved(sender, f"entry {entry.index} of epoch {entry.epoch} "
                                        f"follows an entry of epoch {previous}")
            if existing is not None:
                self._truncate_after(LogIndex(entry.index - 1))
            self._log.append(entry)
        return True

    def _misbehaved(self, sender: NodeId, detail: str) -> bool:
        """Report a message no correct peer sends (it is dropped). Always False."""
        self._outcomes.append(PeerMisbehaved(peer=sender, detail=detail))
        return False

    def _truncate_after(self, index: LogIndex) -> None:
        if index < self._commit:
            raise LocalError(f"truncating committed entries: after {index}, commit {self._commit}")
        self._log.truncate_after(index)
        self._written_upto = LogIndex(min(self._written_upto, index))
        self._lower_durable(index)
        # Replies queued earlier in this batch may describe the entries just cut; they will not
        # be on disk when the batch is sent, so they must not be sent at all.
        self._outbox = [o for o in self._outbox if not _describes_beyond(o.message, index)]

    # ----------------------------------------------------------------- leader: replies

    def _on_reply(self, sender: NodeId, message: Promise | FetchReply | AppendAck | AppendNack,
                  ) -> None:
        progress = self._progress[sender]
        progress.last_heard = self._now
        match message:
            case Promise(last_index=last_index, last_epoch=last_epoch, log_start=log_start,
                         last_ts=last_ts):
                if self._recovery is not None:
                    self._recovery.promises[sender] = Tail(
                        last_epoch=last_epoch, last_index=last_index, log_start=log_start,
                        last_ts=last_ts)
                    self._maybe_finish_promises()
            case FetchReply():
                self._on_fetch_reply(sender, message)
            case AppendAck(match_index=match_index, seq=seq):
                if self.role is Role.LEADER and match_index <= self._log.last_index:
                    progress.acked_seq = max(progress.acked_seq, seq)
                    progress.acknowledge(match_index, self._now)
                    self._maybe_commit()
                    self._maybe_confirm_reads()
                    self._maybe_hand_over()
            case AppendNack():
                if self.role is Role.LEADER:
                    progress.acked_seq = max(progress.acked_seq, message.seq)
                    self._on_nack(progress, message)
                    self._maybe_confirm_reads()

    def _on_nack(self, progress: Progress, nack: AppendNack) -> None:
        if progress.snapshot_index is not None:
            return  # a heartbeat's rejection, while the snapshot that settles it is on its way
        if nack.prev_index <= progress.match_index:
            if not nack.conflict_epoch and nack.conflict_index <= progress.match_index:
                # Its log ends below what it acknowledged: its disk was lost or replaced (or
                # this is a late reply). Lowering match is always safe -- commit never goes back
                # -- and it is the only way such a follower catches up.
                progress.match_index = LogIndex(nack.conflict_index - 1)
                progress.rewind(nack.conflict_index, self._now)
            return  # else a stale reply to a message sent before the follower caught up
        if progress.probing and nack.prev_index != progress.probe_prev:
            return  # a reply to an Append pipelined before the last rewind
        next_index: int = nack.conflict_index
        if nack.conflict_epoch:
            ours = self._log.last_index_of_epoch(nack.conflict_epoch, nack.prev_index)
            if ours is not None:
                next_index = ours + 1
        progress.rewind(min(next_index, nack.prev_index), self._now)

    def _maybe_commit(self) -> None:
        if self.role is not Role.LEADER or self.suspended:
            return
        durable = sorted([self._durable_upto, *(p.match_index for p in self._progress.values())],
                         reverse=True)
        candidate = durable[self._quorum - 1]
        if candidate > self._commit and self._log.epoch_at(candidate) == self._epoch:
            self._commit = candidate
            self._commit_notice = True
            self._maybe_confirm_reads()

    # ----------------------------------------------------------------- leader: recovery

    def _maybe_finish_promises(self) -> None:
        recovery = self._recovery
        if recovery is None or recovery.fetching is not None:
            return
        if self._durable_promise != self._epoch or self._persist_needed() or self._writes:
            return  # our own promise and log count only once durable
        mine = Tail(last_epoch=self._log.last_epoch, last_index=self._log.last_index,
                    last_ts=self._log.last_ts)
        future_after = self._wall + self._clock.max_offset_ms if self._wall else None
        best = recovery.best(self.node_id, mine, future_after=future_after)
        if best is None:
            return
        source, target = best
        if source == self.node_id:
            self._become_leader()
        elif target.last_index < self._commit:
            # The best log of a majority holds every committed entry: this promise lies.
            del recovery.promises[source]
            self._misbehaved(source, f"promised a log ending at {target.last_index} of epoch "
                             f"{target.last_epoch}, below this node's commit index "
                             f"{self._commit}")
            self._maybe_finish_promises()
        elif target.last_index <= self._commit:
            # Our prefix up to the commit index is committed, so it equals the source's log.
            self._adopt(target)
        else:
            recovery.fetching = Fetching(source=source, target=target,
                                         next_index=LogIndex(self._commit + 1),
                                         last_progress=self._now)
            self._send(source, Fetch(epoch=self._epoch, from_index=recovery.fetching.next_index))

    def _adopt(self, target: Tail) -> None:
        """Our log now equals the best promiser's up to its last index: cut the rest, lead."""
        if self._log.last_index > target.last_index:
            self._truncate_after(target.last_index)
        self._become_leader()

    def _on_fetch_reply(self, sender: NodeId, reply: FetchReply) -> None:
        fetching = self._recovery.fetching if self._recovery is not None else None
        if fetching is None or sender != fetching.source or reply.from_index != fetching.next_index:
            return
        if not _contiguous(reply.from_index - 1, reply.entries) or any(
                e.index > fetching.target.last_index for e in reply.entries):
            return
        if not self._merge(sender, reply.entries):
            return
        fetching.next_index = LogIndex(reply.from_index + len(reply.entries))
        assert self._recovery is not None  # (fetching is its)
        fetching.last_progress = self._recovery.progress_at = self._now
        fetching.retries = 0
        if fetching.next_index > fetching.target.last_index:
            self._adopt(fetching.target)
        elif reply.entries:
            self._send(sender, Fetch(epoch=self._epoch, from_index=fetching.next_index))

    def _on_fetched_snapshot(self, sender: NodeId, snapshot: InstallSnapshot) -> None:
        """The fetch source compacted what we asked for and sent its ledger instead."""
        fetching = self._recovery.fetching if self._recovery is not None else None
        if fetching is None or sender != fetching.source \
                or not fetching.next_index <= snapshot.index <= fetching.target.last_index:
            return
        if self._log.epoch_at(snapshot.index) != snapshot.last_epoch:
            self._install_snapshot(snapshot)
        self._commit = max(self._commit, snapshot.index)  # the source had applied it
        fetching.next_index = LogIndex(snapshot.index + 1)
        assert self._recovery is not None  # (fetching is its)
        fetching.last_progress = self._recovery.progress_at = self._now
        fetching.retries = 0
        if fetching.next_index > fetching.target.last_index:
            self._adopt(fetching.target)
        else:
            self._send(sender, Fetch(epoch=self._epoch, from_index=fetching.next_index))

    def _on_snapshot_progress(self, sender: NodeId, epoch: Epoch) -> None:
        """A part of the snapshot we fetch arrived: the source is sending, not silent."""
        fetching = self._recovery.fetching if self._recovery is not None else None
        if fetching is not None and sender == fetching.source and epoch == self._epoch:
            assert self._recovery is not None  # (fetching is its)
            fetching.last_progress = self._recovery.progress_at = self._now
            fetching.retries = 0

    def _tick_recovery(self) -> None:
        recovery = self._recovery
        assert recovery is not None
        if self._now - recovery.progress_at >= self._timing.recovery_stall_ticks:
            self._end_leadership("its recovery of the log received nothing within the "
                                 "recovery-stall time", relinquish=True)
            return
        if self._now % self._timing.retransmit_ticks == 0:
            # Every peer, promised or not: a promiser answers again, which keeps the contact
            # that a long fetch from one source would otherwise lose (and step us down).
            for peer in self._peers:
                self._send(peer, Prepare(epoch=self._epoch))
        fetching = recovery.fetching
        patience = (self._timing.snapshot_retry_ticks
                    if fetching is not None and fetching.next_index <= fetching.target.log_start
                    else self._timing.retransmit_ticks)  # a snapshot takes longer to arrive
        if fetching is None or self._now - fetching.last_progress < patience:
            return
        fetching.retries += 1
        fetching.last_progress = self._now
        if fetching.retries > 3:  # the source went quiet: choose among the other promises
            del recovery.promises[fetching.source]
            recovery.fetching = None
            self._maybe_finish_promises()
        else:
            self._send(fetching.source, Fetch(epoch=self._epoch, from_index=fetching.next_index))

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self._recovery = None
        self._epoch_start = LogIndex(self._log.last_index + 1)
        self._clock.witness(self._log.last_ts)  # our timestamps follow the adopted log's
        self._log.append(LogEntry(index=self._epoch_start, epoch=self._epoch,
                                  payload=EpochStart(leader=self.node_id),
                                  ts=self._clock.now(self._wall)))
        for progress in self._progress.values():
            progress.match_index = LogIndex(0)
            progress.rewind(self._epoch_start, self._now)

    # ----------------------------------------------------------------- leader: sending

    def _flush(self) -> None:
        """Turn pending leader work into messages: new entries, commit notices, read rounds."""
        if self.role is not Role.LEADER:
            return
        if self._read_round_needed:
            self._read_round_needed = False
            self._send_heartbeats(new_round=True)
            self._maybe_confirm_reads()  # a one-node cluster confirms at once
        for peer, progress in self._progress.items():
            sent = False
            if progress.next_index <= self._log.start:
                sent = self._maybe_send_snapshot(peer, progress)
            else:
                progress.snapshot_index = None  # it acknowledged a point we hold: entries again
            while (progress.next_index > self._log.start
                   and progress.next_index <= self._log.last_index
                   and len(progress.inflight) < progress.window(self._timing.max_inflight)):
                self._send_entries(peer, progress)
                sent = True
            if sent:
                progress.told_commit = self._commit

    def _maybe_send_snapshot(self, peer: NodeId, progress: Progress) -> bool:
        """The entries this follower needs were compacted: have a snapshot sent instead."""
        waiting = progress.snapshot_index is not None and (
            self._now - progress.snapshot_sent < self._timing.snapshot_retry_ticks)
        if waiting:
            return False
        self._snapshot_requests.append((peer, self._epoch))
        progress.snapshot_index = self._log.start  # refined to the snapshot's index in ready()
        progress.snapshot_sent = self._now
        progress.inflight.clear()
        return True

    def _snapshots_at(self, index: LogIndex) -> tuple[SnapshotWanted, ...]:
        """The snapshots asked for in this batch, all of the ledger as of `index`. A request
        of an epoch below the entry at `index` is dropped: its asker has moved on to a newer
        epoch since (in this same batch) and asks again if it still needs entries."""
        last_epoch = self._epoch_at(index)
        wanted = tuple(SnapshotWanted(to=to, epoch=epoch, index=index, last_epoch=last_epoch,
                                      last_ts=self._log.ts_at(index) or ZERO)
                       for to, epoch in self._snapshot_requests if last_epoch <= epoch)
        self._snapshot_requests.clear()
        for snapshot in wanted:
            progress = self._progress.get(snapshot.to)
            if progress is not None and progress.snapshot_index is not None:
                progress.snapshot_index = index
        return wanted

    def _send_entries(self, peer: NodeId, progress: Progress) -> None:
        prev = progress.next_index - 1
        entries = self._log.take(progress.next_index, self._timing.max_append_weight)
        if not progress.inflight:
            progress.last_progress = self._now  # a new flight: stall is measured from here
        self._send(peer, Append(epoch=self._epoch, prev_index=LogIndex(prev),
                                prev_epoch=self._epoch_at(prev), entries=entries,
                                commit=self._commit, seq=self._hb_seq))
        progress.next_index = LogIndex(prev + len(entries) + 1)
        progress.inflight.append(progress.next_index - 1)
        progress.probe_prev = prev

    def _send_heartbeats(self, *, new_round: bool = False) -> None:
        if new_round:
            self._hb_seq += 1
        self._last_heartbeat = self._now
        self._commit_notice = False
        for peer, progress in self._progress.items():
            self._send(peer, self._heartbeat(progress))

    def _send_commit_notices(self) -> None:
        """The commit index, to each follower that has not had it with entries since it
        advanced: once a tick at most, not once per commit (followers need it only to apply,
        which they do not hurry; clients are answered by the leader)."""
        self._commit_notice = False
        for peer, progress in self._progress.items():
            if progress.told_commit < self._commit and progress.snapshot_index is None:
                self._send(peer, self._heartbeat(progress))

    def _heartbeat(self, progress: Progress) -> Append:
        # prev = match: known to be on the follower, so a heartbeat never fails the check
        # (unless that entry is compacted here: then the start, which a follower may lack)
        prev = max(progress.match_index, self._log.start)
        progress.told_commit = self._commit
        return Append(epoch=self._epoch, prev_index=prev, prev_epoch=self._epoch_at(prev),
                      entries=(),
                      commit=self._commit, seq=self._hb_seq)

    def _maybe_confirm_reads(self) -> None:
        if not self._reads or self.role is not Role.LEADER:
            return
        acked = sorted([self._hb_seq, *(p.acked_seq for p in self._progress.values())],
                       reverse=True)
        confirmed_seq = acked[self._quorum - 1]
        ready = [r for r in self._reads if r[2] <= confirmed_seq]
        if ready:
            self._reads = [r for r in self._reads if r[2] > confirmed_seq]
            self._outcomes.append(ReadsConfirmed(
                reads=tuple(r[0] for r in ready), epoch=self._epoch,
                index=LogIndex(max(self._commit, *(r[1] for r in ready)))))

    # ----------------------------------------------------------------- leader: switchover

    def _on_switchover(self, request: int, to: NodeId | None) -> None:
        """Stop taking requests; hand over once `to` holds every entry (`_maybe_hand_over`)."""
        refusal = self._refusal()
        if refusal is not None:
            self._outcomes.append(SwitchoverAnswered(request=request, refusal=refusal))
            return
        target, problem = self._handover_target(to)
        if target is None:
            self._outcomes.append(SwitchoverAnswered(request=request, invalid=problem))
            return
        self._handover = _Handover(request=request, to=target, started=self._now)
        self._maybe_hand_over()

    def _handover_target(self, to: NodeId | None) -> tuple[NodeId | None, str]:
        """`to` if it can be handed leadership, else the most caught-up follower in contact."""
        if to == self.node_id:
            return None, f"{to} already leads"
        if to is not None:
            return (to, "") if to in self._progress else (
                None, f"{to} is not a member of this cluster")
        window = self._timing.election_timeout_ticks
        in_contact = [p for p, progress in self._progress.items()
                      if self._now - progress.last_heard <= window]
        if not in_contact:
            return None, "no follower is in contact"
        return max(in_contact, key=lambda p: self._progress[p].match_index), ""

    def _maybe_hand_over(self) -> None:
        """Hand over once every entry is committed and applied (every accepted request has
        its answer), no read waits, and the target holds the whole log: tell it to take
        over, and give up leadership in ZooKeeper naming it (`handover_to`)."""
        handover = self._handover
        if handover is None or self.role is not Role.LEADER or self.suspended:
            return
        last = self._log.last_index
        if self._commit != last or self._handed_out != last or self._reads \
                or self._progress[handover.to].match_index != last:
            return
        self._handover = None
        self._send(handover.to, TakeOver(epoch=self._epoch))
        self._outcomes.append(SwitchoverAnswered(request=handover.request, to=handover.to,
                                                 epoch=self._epoch,
                                                 ticks=self._now - handover.started))
        self._end_leadership(f"handed over to {handover.to} (switchover)", relinquish=True,
                             handover_to=handover.to)

    def _tick_handover(self) -> None:
        handover = self._handover
        if handover is None or self._now - handover.started < self._timing.handover_ticks:
            return
        self._handover = None
        self._outcomes.append(SwitchoverAnswered(
            request=handover.request, gave_up=(
                f"{handover.to} did not catch up in time; {self.node_id} leads on and takes "
                "requests again")))

    # ----------------------------------------------------------------- helpers

    def _end_leadership(self, reason: str, *, relinquish: bool,
                        handover_to: NodeId | None = None) -> None:
        if self._handover is not None:
            self._outcomes.append(SwitchoverAnswered(
                request=self._handover.request,
                gave_up=f"leadership ended before the handover: {reason}"))
            self._handover = None
        if self._reads:
            self._outcomes.append(ReadsRejected(reads=tuple(r[0] for r in self._reads),
                                                reason=Unavailable.NOT_LEADER, leader=None))
        self._outcomes.append(LeadershipEnded(epoch=self._epoch, reason=reason,
                                              relinquish=relinquish, handover_to=handover_to))
        self.role = Role.FOLLOWER
        self.leader = None
        self._snapshot_requests = [r for r in self._snapshot_requests if r[1] != self._epoch]
        self._epoch = Epoch(0)
        self._recovery = None
        self._progress = {}
        self._reads = []
        self._read_round_needed = False
        self._commit_notice = False

    def _raise_promise(self, epoch: Epoch, to: NodeId) -> None:
        self._promised = epoch
        self._promised_to = to
        self.highest_epoch_seen = max(self.highest_epoch_seen, epoch)
        self._verified = LogIndex(0)
        self.leader = None

    def _has_majority_contact(self) -> bool:
        window = self._timing.election_timeout_ticks
        heard = 1 + sum(1 for p in self._progress.values() if self._now - p.last_heard <= window)
        return heard >= self._quorum

    def _persist_needed(self) -> bool:
        return (self._written_upto != self._written_last
                or self._log.last_index != self._written_upto
                or self._promise_changed()
                or self._install is not None or self._compaction is not None)

    def _promise_changed(self) -> bool:
        return (self._promised, self._promised_to) != (self._written_promise,
                                                        self._written_promised_to)

    def _lower_durable(self, index: LogIndex) -> None:
        """The log changed above `index`: disk and memory agree at most up to there, now and
        once each write in flight lands."""
        self._durable_upto = LogIndex(min(self._durable_upto, index))
        for write in self._writes:
            write.floor = LogIndex(min(write.floor, index))

    def _epoch_at(self, index: int) -> Epoch:
        epoch = self._log.epoch_at(index)
        if epoch is None:
            raise LocalError(f"no entry at {index}")
        return epoch

    def _send(self, to: NodeId, message: Message) -> None:
        self._outbox.append(Outgoing(to=to, message=message))


def _describes_beyond(message: Message | StreamMessage, index: int) -> bool:
    """Whether a reply claims this node holds entries above `index`."""
    match message:
        case AppendAck(match_index=match_index):
            return match_index > index
        case Promise(last_index=last_index) | FetchReply(last_index=last_index):
            return last_index > index
    return False


def _contiguous(prev_index: int, entries: Sequence[LogEntry]) -> bool:
    return all(e.index == prev_index + 1 + i for i, e in enumerate(entries))
