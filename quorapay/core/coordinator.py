"""ZooKeeper coordination of one node, as a sans-IO state machine.

The coordinator decides which ZooKeeper operations to perform and what they mean for the replica;
its driver performs them (kazoo in a node, a simulated ZooKeeper in the simulator) and feeds back
replies, watch notifications and session events. Outputs are ZooKeeper `Request`s and replica
inputs: LeadershipGranted, LeadershipRevoked, CoordinationSuspended, CoordinationResumed.

Theory of operation
-------------------
Two fibers run per ZooKeeper session, each a generator that yields an operation and receives its
result (or has a ZkFailure thrown in): the election fiber and the leader-watch fiber.

Election (per session, with a fresh random `token` from the driver):
  1. ensure members/ and election/ exist and the epoch znode exists; register members/<node>.
  2. join: list election/; adopt a child with our `<node>__<token>__` prefix (a create whose
     reply was lost to a connection loss) or create one, ephemeral and sequential.
  3. evaluate: if ours is the lowest sequence, lead; else watch only the predecessor and go to 3
     when it changes.
  4. lead: read `epoch` (value e, version v) and, in one transaction, set it to
     E = max(e, highest epoch seen) + 1 if still at version v, and create the ephemeral `leader`
     znode. Grant E. Keep it until the replica asks to relinquish E; then delete our leader and
     candidate znodes (only if this session owns them) and go to 2, at the back of the queue.
  Switchover: a leader that hands over relinquishes naming its target (RelinquishRequested
  with `handover_to`); before deleting its leader znode it creates the ephemeral `handover`
  znode naming the target and the epoch handed over. The target, told by the old leader
  (ClaimRequested), claims at once from wherever it waits in the queue -- step 4 -- and goes
  back to the queue if a leader of a later epoch is there first. The head of the queue, before
  claiming, waits while a handover names another node and its epoch is still the last granted:
  at most HANDOVER_PATIENCE retries, then it removes it. Whoever is granted removes a handover
  left behind. Claiming out of turn is as safe as any claim: ClaimEpoch decides.
  A node the replica declares ineligible (its clock is off from a majority) leaves the queue:
  a candidate waiting for its predecessor deletes its candidate znode, and it waits before step
  2 until it is eligible again, then rejoins at the back. (A leader relinquishes first.)

Session events: SUSPENDED -> CoordinationSuspended (the leader stops committing); CONNECTED with
the same session -> CoordinationResumed, and fibers that lost their connection mid-operation
restart their procedure (idempotent: step 2 finds our own candidate, step 4 our own leader
znode); LOST -> LeadershipRevoked, the fibers end, and a new session starts them afresh.

Whatever is in ZooKeeper is input, not truth: anyone holding the cluster's ZooKeeper credential
(or a bug) can write anything there. Nothing found there raises; each oddity is reported
(`CoordinationWarning`, which the driver logs) and then:
  * `epoch` missing, undecodable or out of range: repaired -- recreated, or overwritten by the
    next claim (compare-and-set on the version read) -- from the highest epoch this node has
    seen. That may repeat an epoch granted before; the replicas refuse a second leader of an
    epoch they promised (EPOCH_TAKEN, see `core/replica.py`), so the repeat relinquishes and
    claims above it.
  * `leader` undecodable, naming a node that is not a member, or persistent (ours are always
    ephemeral): not a leader. The watch reports no leader, and the next candidate to claim
    deletes it. One naming a member, ephemeral, is waited out until its session ends.
  * election candidates of non-members are ignored, and persistent ones (ours are ephemeral)
    removed: they would block the queue for good. An ephemeral squatter holds it up only for as
    long as its session lives, like a leader znode.
  * an operation refused for lack of rights (NO_AUTH) or failing in a way the procedure does
    not expect: report, wait for `RetryDue` (the driver sends one every second or so), start
    the procedure over.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, assert_never

from quorapay.core import znodes
from quorapay.core.bounds import MAX_COUNTER
from quorapay.core.election import (
    candidate_node,
    candidate_prefix,
    next_epoch,
    own_candidate,
    predecessor,
)
from quorapay.core.inputs import (
    CoordinationResumed,
    CoordinationSuspended,
    Input,
    LeadershipGranted,
    LeadershipRevoked,
)
from quorapay.core.types import Epoch, NodeId
from quorapay.core.znodes import EpochRecord, HandoverInfo, Layout, LeaderInfo, MemberInfo

# An epoch znode more than this far above every epoch a node has seen is not believed: one write
# could otherwise use up the range of epochs (2^53). Honest epochs move by one per election; if a
# node is so far behind, the replicas refuse its lower claim and it claims above their promise.
MAX_EPOCH_JUMP = 2**20
# The head of the election queue waits this many RetryDue for a handover's target to claim.
HANDOVER_PATIENCE = 5

# ---------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsurePath:
    """Create the persistent znode and its parents if missing. Result: None."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    """Result: the created path (with the sequence suffix when `sequential`)."""

    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequential: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    """Result: (data, Stat). With `watch`, WatchFired(path) when the znode changes or goes."""

    path: str
    watch: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildren:
    """Result: a tuple of child names."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Exists:
    """Result: Stat or None. With `watch`, WatchFired(path) when it is created, changes or goes."""

    path: str
    watch: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Result: None. version -1 deletes any version."""

    path: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimEpoch:
    """One transaction: set `epoch_path` to `epoch_data` if still at `epoch_version`, and
    create the ephemeral `leader_path`. Result: None. Fails with BAD_VERSION (the epoch moved)
    or NODE_EXISTS (a leader znode exists); then nothing changed."""

    epoch_path: str
    epoch_version: int
    epoch_data: bytes
    leader_path: str
    leader_data: bytes


ZkOp = EnsurePath | Create | Get | GetChildren | Exists | Delete | ClaimEpoch


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat:
    version: int
    owner: int  # the session owning an ephemeral znode; 0 for a persistent one


class ZkError(StrEnum):
    NO_NODE = "no_node"
    NODE_EXISTS = "node_exists"
    BAD_VERSION = "bad_version"
    CONNECTION_LOSS = "connection_loss"  # the reply was lost: the operation may have happened
    SESSION_EXPIRED = "session_expired"
    NO_AUTH = "no_auth"  # the znode's ACL does not admit this client's credential
    OTHER = "other"  # anything else ZooKeeper refused (reported, then retried)


# ---------------------------------------------------------------------------- inputs, outputs


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """Perform `op` and answer with Replied(id=...)."""

    id: int
    op: ZkOp


@dataclass(frozen=True, slots=True, kw_only=True)
class Replied:
    id: int
    value: Any = None
    error: ZkError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """CONNECTED with a new session. `token` must be fresh randomness from the driver."""

    session: int
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSuspended:
    """SUSPENDED: the connection dropped; the session may still be alive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionResumed:
    """CONNECTED again with the same session."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExpired:
    """LOST: the session is gone, and with it every ephemeral znode it owned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchFired:
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelinquishRequested:
    """The replica gave up leading `epoch` (LeadershipEnded with relinquish), for
    `handover_to` in a switchover."""

    epoch: Epoch
    handover_to: NodeId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRequested:
    """The leader of `epoch` handed leadership to this node (TakeOverAsked): claim it now."""

    epoch: Epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class DeposeRequested:
    """A majority heard nothing from `node`, leader of `epoch`, for the leader-silence time
    (LeaderSilent): end its ZooKeeper leadership now rather than when its session expires."""

    epoch: Epoch
    node: NodeId
    agreeing: tuple[NodeId, ...] = ()  # for the log


@dataclass(frozen=True, slots=True, kw_only=True)
class EligibilityChanged:
    """Whether this node may lead (False while its clock is off from a majority)."""

    eligible: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDue:
    """Time to retry what failed unexpectedly. The driver sends it every second or so."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationWarning:
    """Something in ZooKeeper an operator must hear of (the driver logs it): a znode that is
    garbage, squatted or missing, and what was done about it; an operation refused."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationNotice:
    """Something the coordinator did that an operator should see in the log (a silent leader
    deposed): not an oddity of ZooKeeper's content."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochSeen:
    """The replica has seen `epoch`: the next claim must go above it."""

    epoch: Epoch


Event = (SessionStarted | ConnectionSuspended | ConnectionResumed | SessionExpired | Replied
         | WatchFired | RelinquishRequested | ClaimRequested | EpochSeen | EligibilityChanged
         | RetryDue | DeposeRequested)
Output = Request | Input | CoordinationWarning | CoordinationNotice


class SessionState(StrEnum):
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"


# ---------------------------------------------------------------------------- fiber plumbing


class ZkFailure(Exception):
    """An operation failed; thrown into the fiber that asked for it."""

    def __init__(self, error: ZkError) -> None:
        super().__init__(error.value)
        self.error = error


@dataclass(frozen=True, slots=True)
class _WaitWatch:
    path: str


@dataclass(frozen=True, slots=True)
class _WaitWatchOrRetry:
    """Resumed with True when the watch on `path` fires, False when a retry is due."""

    path: str


@dataclass(frozen=True, slots=True)
class _WaitRelinquish:
    epoch: Epoch


@dataclass(frozen=True, slots=True)
class _WaitEligible:
    pass


@dataclass(frozen=True, slots=True)
class _WaitConnected:
    pass


@dataclass(frozen=True, slots=True)
class _WaitSessionEnd:
    pass


@dataclass(frozen=True, slots=True)
class _WaitRetry:
    pass


_Wait = (_WaitWatch | _WaitWatchOrRetry | _WaitRelinquish | _WaitConnected | _WaitSessionEnd
         | _WaitEligible | _WaitRetry)
Fiber = Generator[ZkOp | _Wait, Any, None]


def _expect(failure: ZkFailure, *errors: ZkError) -> None:
    """Re-raise `failure` unless it is one of `errors`."""
    if failure.error not in errors:
        raise failure


class Coordinator:
    def __init__(self, *, cluster: str, node: NodeId, peer_url: str, client_url: str,
                 members: tuple[NodeId, ...] = ()) -> None:
        self._layout = Layout(cluster)
        self._node = node
        self._members = frozenset(members)  # empty: any node may be a member (tests)
        self._member = znodes.encode(MemberInfo(node=node, peer_url=peer_url,
                                                client_url=client_url))
        self._peer_url, self._client_url = peer_url, client_url
        self.state = SessionState.CONNECTING
        self.granted: Epoch | None = None
        self.zk_leader: LeaderInfo | None = None
        self._session = 0
        self._token = ""
        self._floor = Epoch(0)
        self._next_id = 0
        self._fibers: list[tuple[Fiber, Any]] = []  # (fiber, what it waits for)
        self._fired: set[str] = set()
        self._relinquished: set[Epoch] = set()
        self._handovers: dict[Epoch, NodeId] = {}  # epochs relinquished for a switchover
        self._claim_from: Epoch | None = None  # handed leadership after this epoch: claim now
        self.eligible = True
        self._out: list[Output] = []

    # ------------------------------------------------------------------ the driver contract

    def step(self, event: Event) -> list[Output]:
        match event:
            case SessionStarted(session=session, token=token):
                self._start_session(session, token)
            case ConnectionSuspended():
                self.state = SessionState.SUSPENDED
                self._out.append(CoordinationSuspended())
            case ConnectionResumed():
                self.state = SessionState.CONNECTED
                self._out.append(CoordinationResumed())
                self._wake(lambda waiting: isinstance(waiting, _WaitConnected), None, every=True)
            case SessionExpired():
                self._end_session()
            case Replied(id=request_id, value=value, error=error):
                self._wake(lambda waiting: waiting == request_id,
                           ZkFailure(error) if error is not None else value)
            case WatchFired(path=path):
                woke = self._wake(lambda waiting: waiting == _WaitWatch(path), None, every=True)
                woke |= self._wake(lambda waiting: waiting == _WaitWatchOrRetry(path), True,
                                   every=True)
                if not woke:
                    self._fired.add(path)
            case RelinquishRequested(epoch=epoch, handover_to=to):
                if to is not None:
                    self._handovers[epoch] = to
                self._relinquished.add(epoch)
                self._wake(lambda waiting: waiting == _WaitRelinquish(epoch), None, every=True)
            case ClaimRequested(epoch=epoch):
                if self.granted is None and self.eligible:
                    self._claim_from = epoch
                    self._wake(self._waits_in_queue, None, every=True)
            case EpochSeen(epoch=epoch):
                self._floor = max(self._floor, epoch)
            case EligibilityChanged(eligible=eligible):
                self.eligible = eligible
                if eligible:
                    self._wake(lambda waiting: isinstance(waiting, _WaitEligible), None,
                               every=True)
                else:  # a candidate waiting in the queue: leave it
                    self._wake(self._waits_in_queue, None, every=True)
            case DeposeRequested(epoch=epoch, node=node, agreeing=agreeing):
                if self.state is SessionState.CONNECTED:
                    self._advance(self._depose(epoch, node, agreeing), None)
            case RetryDue():
                self._wake(lambda waiting: isinstance(waiting, _WaitRetry), None, every=True)
                self._wake(lambda waiting: isinstance(waiting, _WaitWatchOrRetry), False,
                           every=True)
            case _:
                assert_never(event)
        out, self._out = self._out, []
        return out

    def _start_session(self, session: int, token: str) -> None:
        if self._session and self.state is not SessionState.LOST:
            self._end_session()  # a new session means the old one is gone, reported or not
        self._end_fibers()
        self._session, self._token = session, token
        self._claim_from = None
        self.state = SessionState.CONNECTED
        self._out.append(CoordinationResumed())
        for fiber in (self._run_election(), self._run_leader_watch()):
            self._advance(fiber, None)

    def _end_session(self) -> None:
        self.state = SessionState.LOST
        self._end_fibers()
        self.granted = None
        self.zk_leader = None
        self._out.append(LeadershipRevoked())

    def _end_fibers(self) -> None:
        for fiber, _ in self._fibers:
            fiber.close()
        self._fibers = []
        self._fired.clear()

    # ------------------------------------------------------------------ the scheduler

    def _wake(self, matches: Any, value: Any, *, every: bool = False) -> bool:
        """Resume the first fiber (or `every` fiber) whose wait `matches`. True if any was."""
        woken = [entry for entry in self._fibers if matches(entry[1])]
        if not every:
            woken = woken[:1]
        for entry in woken:
            self._fibers.remove(entry)
            self._advance(entry[0], value)
        return bool(woken)

    def _advance(self, fiber: Fiber, value: Any) -> None:
        """Run `fiber` until it waits for something that has not happened yet."""
        try:
            while True:
                step = fiber.throw(value) if isinstance(value, ZkFailure) else fiber.send(value)
                value = None
                if isinstance(step, _Wait):
                    if not self._happened(step):
                        self._fibers.append((fiber, step))
                        return
                else:
                    self._next_id += 1
                    self._out.append(Request(id=self._next_id, op=step))
                    self._fibers.append((fiber, self._next_id))
                    return
        except StopIteration:
            return

    def _happened(self, wait: _Wait) -> bool:
        """Whether what a fiber wants to wait for has already happened (consuming a watch)."""
        match wait:
            case _WaitWatch(path=path) | _WaitWatchOrRetry(path=path) if path in self._fired:
                self._fired.discard(path)
                return True
            case _WaitRelinquish(epoch=epoch):
                return epoch in self._relinquished
            case _WaitConnected():
                return self.state is SessionState.CONNECTED
            case _WaitEligible():
                return self.eligible
        return not self.eligible and self._waits_in_queue(wait)

    def _waits_in_queue(self, wait: Any) -> bool:
        """Whether a fiber waiting for `wait` is a candidate watching its predecessor."""
        return isinstance(wait, _WaitWatch) and wait.path.startswith(
            f"{self._layout.election}/")

    def _resilient(self, procedure: Any, what: str) -> Fiber:
        """Run `procedure()` for this session; after a connection loss, wait and start over;
        after any other failure, report it and start over once a retry is due."""
        while True:
            try:
                yield from procedure()
            except ZkFailure as failure:
                if failure.error is ZkError.SESSION_EXPIRED:
                    yield _WaitSessionEnd()  # LOST is on its way and ends this fiber
                elif failure.error is ZkError.CONNECTION_LOSS:
                    yield _WaitConnected()
                else:
                    self._warn(f"{what}: ZooKeeper answered {failure.error.value}" + (
                        " (the znodes' ACL does not admit this cluster's ZooKeeper credential:"
                        " check the secrets dir and the ACLs)"
                        if failure.error is ZkError.NO_AUTH else "") + "; retrying")
                    yield _WaitRetry()

    def _warn(self, message: str) -> None:
        self._out.append(CoordinationWarning(message=message))

    # ------------------------------------------------------------------ the election fiber

    def _run_election(self) -> Fiber:
        yield from self._resilient(self._stand_for_election, "standing for election")

    def _stand_for_election(self) -> Fiber:
        layout = self._layout
        yield EnsurePath(path=layout.members)
        yield EnsurePath(path=layout.election)
        try:
            yield Create(path=layout.epoch, data=znodes.encode(EpochRecord(epoch=Epoch(0))))
        except ZkFailure as failure:
            _expect(failure, ZkError.NODE_EXISTS)
        yield from self._register_member()
        prefix = candidate_prefix(self._node, self._token)
        yield from self._resume_leadership(prefix)
        while True:
            if not self.eligible:
                yield from self._withdraw(prefix)
                yield _WaitEligible()
            mine = yield from self._join(prefix)
            children = yield GetChildren(path=layout.election)
            if mine not in children:
                continue
            ahead = predecessor(children, mine, self._members)
            if ahead is None or self._claim_from is not None:  # our turn, or handed to us
                if not self.eligible:
                    continue  # it became ineligible meanwhile: withdraw instead of leading
                if self._claim_from is None and (yield from self._handover_pending()):
                    continue  # waited for another node to take a handover: look again
                yield from self._lead(mine)
                continue
            path = f"{layout.election}/{ahead}"
            stat = yield Exists(path=path, watch=True)
            if stat is None:
                continue
            if stat.owner != 0:
                yield _WaitWatch(path)
            else:  # a persistent squatter would hold the queue up for good
                yield from self._remove_candidate(path, stat)

    def _remove_candidate(self, path: str, stat: Stat) -> Fiber:
        self._warn(f"removing the persistent election candidate {path}: candidates are "
                   "ephemeral")
        try:
            yield Delete(path=path, version=stat.version)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)

    def _register_member(self) -> Fiber:
        path = self._layout.member(self._node)
        while True:
            try:
                yield Create(path=path, data=self._member, ephemeral=True)
                return
            except ZkFailure as failure:
                _expect(failure, ZkError.NODE_EXISTS)
            try:
                _, stat = yield Get(path=path)
                if stat.owner == self._session:
                    return
                yield Delete(path=path, version=-1)  # our previous process's, not yet expired
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE)

    def _withdraw(self, prefix: str) -> Fiber:
        """Leave the election queue: delete our candidate znode, if we have one, and a leader
        znode of ours -- left by a claim whose reply was lost, never granted -- which would
        otherwise make every other candidate wait for it as long as our session lives."""
        children = yield GetChildren(path=self._layout.election)
        mine = own_candidate(children, prefix)
        if mine is not None:
            yield from self._delete_own(f"{self._layout.election}/{mine}")
        yield from self._delete_own(self._layout.leader)

    def _join(self, prefix: str) -> Generator[ZkOp, Any, str]:
        children = yield GetChildren(path=self._layout.election)
        mine = own_candidate(children, prefix)
        if mine is None:
            created = yield Create(path=f"{self._layout.election}/{prefix}", ephemeral=True,
                                   sequential=True)
            mine = str(created).rsplit("/", 1)[1]
        return mine

    def _lead(self, mine: str) -> Fiber:
        handed, self._claim_from = self._claim_from, None
        epoch = yield from self._claim(handed)
        if epoch is None:
            return  # back to the queue
        yield from self._hold(epoch, (
            f"the leader of epoch {handed} handed leadership to this node" if handed is not None
            else "first in ZooKeeper's election queue, with no leader znode"))
        yield from self._delete_own(f"{self._layout.election}/{mine}")

    def _hold(self, epoch: Epoch, cause: str) -> Fiber:
        """Lead `epoch` (its leader znode is ours) until the core relinquishes it; then hand
        it over if a switchover asked, and delete the leader znode."""
        if epoch != self.granted and epoch not in self._relinquished:
            self.granted = epoch  # (a rerun after a connection loss finds its own grant)
            self._out.append(LeadershipGranted(epoch=epoch, cause=cause))
            yield from self._remove_handover()
        yield _WaitRelinquish(epoch)
        self.granted = None
        to = self._handovers.get(epoch)  # kept: a rerun after a connection loss needs it too
        if to is not None:
            yield from self._hand_over(to, epoch)
        yield from self._delete_own(self._layout.leader)

    def _resume_leadership(self, prefix: str) -> Fiber:
        """First in every run of the election fiber: a leader znode of ours -- a leadership
        held across a connection loss, one being given up when it was lost, or a claim whose
        reply was lost -- is held until relinquished, then removed with our candidate,
        whatever our place in the queue. (A switchover's target leads out of queue order:
        waiting for its turn there would keep its leader znode, and every other node,
        waiting for ever.)"""
        try:
            data, stat = yield Get(path=self._layout.leader)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE)
            return
        leader = self._leader_in(data, stat)
        if stat.owner != self._session or leader is None or not self.eligible:
            return  # (an ineligible node withdraws: that deletes it)
        yield from self._hold(leader.epoch, "its own leader znode, found after a ZooKeeper "
                                            "connection loss")
        mine = own_candidate((yield GetChildren(path=self._layout.election)), prefix)
        if mine is not None:
            yield from self._delete_own(f"{self._layout.election}/{mine}")

    def _hand_over(self, to: NodeId, epoch: Epoch) -> Fiber:
        """Name the switchover's target for the next in the queue to let it claim first."""
        data = znodes.encode(HandoverInfo(to=to, epoch=epoch))
        while True:
            try:
                yield Create(path=self._layout.handover, data=data, ephemeral=True)
                return
            except ZkFailure as failure:
                _expect(failure, ZkError.NODE_EXISTS)
            try:  # one left from an earlier switchover (or ours, from a lost reply)
                found, stat = yield Get(path=self._layout.handover)
                if found == data and stat.owner == self._session:
                    return
                yield Delete(path=self._layout.handover, version=stat.version)
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)

    def _handover_pending(self) -> Generator[ZkOp | _Wait, Any, bool]:
        """At the head of the queue, before claiming: wait while a switchover hands leadership
        to another node -- the `handover` znode names it and its epoch is the last granted --
        for at most HANDOVER_PATIENCE retries, then remove it. A stale or garbage one is
        removed at once. True if it waited (the caller looks at the queue again)."""
        layout = self._layout
        waited = 0
        while True:
            try:
                data, stat = yield Get(path=layout.handover, watch=True)
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE)
                return waited > 0
            handover = znodes.parse_handover(data)
            if handover is None or stat.owner == 0 or (
                    self._members and handover.to not in self._members):
                self._warn(f"removing the handover znode {layout.handover} ({_shown(data)}): "
                           "it names no switchover of this cluster")
            elif handover.to == self._node:
                return waited > 0  # ours to take: removed once granted
            elif waited < HANDOVER_PATIENCE and (yield from self._epoch_is(handover.epoch)):
                waited += 1
                yield _WaitWatchOrRetry(layout.handover)
                continue
            try:
                yield Delete(path=layout.handover, version=stat.version)
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)
            return waited > 0

    def _epoch_is(self, epoch: Epoch) -> Generator[ZkOp, Any, bool]:
        """Whether `epoch` is still the last epoch granted."""
        try:
            data, _ = yield Get(path=self._layout.epoch)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE)
            return False
        record = znodes.parse_epoch(data)
        return record is not None and record.epoch == epoch

    def _remove_handover(self) -> Fiber:
        """Granted: a handover still standing is over (ours to take, or stale)."""
        try:
            _, stat = yield Get(path=self._layout.handover)
            yield Delete(path=self._layout.handover, version=stat.version)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)

    def _claim(self, handed: Epoch | None = None) -> Generator[ZkOp | _Wait, Any, Epoch | None]:
        """Claim the next epoch; None when the caller must look at the queue again: after
        waiting for a leader znode to go, or -- having been `handed` leadership after that
        epoch -- on finding a leader of a later one (another node took over first)."""
        layout = self._layout
        while True:
            try:
                data, stat = yield Get(path=layout.epoch)
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE)
                yield from self._recreate_epoch()
                continue
            epoch = self._epoch_after(data)
            if epoch is None:
                yield _WaitRetry()
                continue
            info = LeaderInfo(node=self._node, epoch=epoch, peer_url=self._peer_url,
                              client_url=self._client_url)
            try:
                yield ClaimEpoch(epoch_path=layout.epoch, epoch_version=stat.version,
                                 epoch_data=znodes.encode(EpochRecord(epoch=epoch)),
                                 leader_path=layout.leader, leader_data=znodes.encode(info))
                return epoch
            except ZkFailure as failure:
                _expect(failure, ZkError.BAD_VERSION, ZkError.NODE_EXISTS)
                if failure.error is ZkError.BAD_VERSION:
                    continue
            try:  # a leader znode exists: ours from a lost reply, or the last leader's
                data, stat = yield Get(path=layout.leader, watch=True)
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE)
                continue
            leader = self._leader_in(data, stat)
            if stat.owner == self._session and leader is not None:
                return leader.epoch
            if leader is None or stat.owner == self._session:
                yield from self._remove_squatter(data, stat)
                continue
            if handed is not None and leader.epoch > handed:
                return None
            yield _WaitWatch(layout.leader)
            if handed is None:
                return None  # the leader is gone: look at the queue (and any handover) again

    def _epoch_after(self, data: bytes) -> Epoch | None:
        """The epoch to claim after the epoch znode's content. Garbage, or a value more than
        MAX_EPOCH_JUMP above the highest epoch seen here (a write that would use up the range of
        epochs), is overwritten from the highest epoch seen here. None if even that is at the
        top: nothing is left to claim."""
        record = znodes.parse_epoch(data)
        usable = record is not None and record.epoch - self._floor <= MAX_EPOCH_JUMP
        if not usable:
            what = "not an epoch" if record is None else \
                f"more than {MAX_EPOCH_JUMP} above the highest epoch seen here"
            self._warn(f"the epoch znode {self._layout.epoch} holds {_shown(data)}, {what}: "
                       f"overwriting it from the highest epoch seen here ({self._floor})")
        epoch = next_epoch(record.epoch if record is not None and usable else Epoch(0),
                           self._floor)
        if epoch > MAX_COUNTER:
            self._warn(f"epoch {epoch} would be above the range of epochs: not claiming")
            return None
        return epoch

    def _recreate_epoch(self) -> Fiber:
        self._warn(f"the epoch znode {self._layout.epoch} is missing: recreating it from the "
                   f"highest epoch seen here ({self._floor})")
        try:
            yield Create(path=self._layout.epoch,
                         data=znodes.encode(EpochRecord(epoch=self._floor)))
        except ZkFailure as failure:
            _expect(failure, ZkError.NODE_EXISTS)

    def _leader_in(self, data: bytes, stat: Stat) -> LeaderInfo | None:
        """The leader a leader znode names, or None if it cannot be one of ours: undecodable,
        a non-member, or persistent (ours are ephemeral)."""
        leader = znodes.parse_leader(data)
        if leader is None or stat.owner == 0 or (
                self._members and leader.node not in self._members):
            return None
        return leader

    def _remove_squatter(self, data: bytes, stat: Stat) -> Fiber:
        self._warn(f"removing the leader znode {self._layout.leader} ({_shown(data)}, "
                   f"{'persistent' if stat.owner == 0 else 'ephemeral'}): it names no leader "
                   "of this cluster")
        try:
            yield Delete(path=self._layout.leader, version=stat.version)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)

    def _delete_own(self, path: str) -> Fiber:
        try:
            _, stat = yield Get(path=path)
            if stat.owner == self._session:
                yield Delete(path=path, version=stat.version)
        except ZkFailure as failure:
            _expect(failure, ZkError.NO_NODE, ZkError.BAD_VERSION)

    # ------------------------------------------------------------------ deposing a silent leader

    def _depose(self, epoch: Epoch, node: NodeId, agreeing: tuple[NodeId, ...]) -> Fiber:
        """Delete the leader znode if it still names `node` in `epoch` (another session's),
        then that session's election candidates, so that the next candidate claims a new
        epoch now. One try: any failure ends it (the leader is gone already, or the
        connection is; a silence that lasts is reported again). Safety does not depend on
        it: the new epoch is promised by a majority before anything commits in it."""
        layout = self._layout
        try:
            data, stat = yield Get(path=layout.leader)
            leader = self._leader_in(data, stat)
            if leader is None or (leader.node, leader.epoch) != (node, epoch) \
                    or stat.owner == self._session:
                return
            yield Delete(path=layout.leader, version=stat.version)
            self._out.append(CoordinationNotice(
                message=f"deposed the leader {node} of epoch {epoch}: "
                        f"{', '.join(agreeing) or 'a majority'} heard nothing from it for the "
                        "leader-silence time; the next candidate claims a new epoch"))
            for child in (yield GetChildren(path=layout.election)):
                if candidate_node(child) != node:
                    continue
                _, candidate = yield Get(path=f"{layout.election}/{child}")
                if candidate.owner == stat.owner:
                    yield Delete(path=f"{layout.election}/{child}", version=candidate.version)
        except ZkFailure:
            return

    # ------------------------------------------------------------------ the leader-watch fiber

    def _run_leader_watch(self) -> Fiber:
        yield from self._resilient(self._watch_leader, "watching the leader znode")

    def _watch_leader(self) -> Fiber:
        path = self._layout.leader
        while True:
            try:
                data, stat = yield Get(path=path, watch=True)
                self.zk_leader = self._leader_in(data, stat)
                if self.zk_leader is None:
                    self._warn(f"the leader znode {path} holds {_shown(data)}"
                               f"{' (persistent)' if stat.owner == 0 else ''}: not a leader of "
                               "this cluster; ignoring it")
            except ZkFailure as failure:
                _expect(failure, ZkError.NO_NODE)
                self.zk_leader = None
                if (yield Exists(path=path, watch=True)) is not None:
                    continue
            yield _WaitWatch(path)


def _shown(data: bytes) -> str:
    """A znode's content for a log line: short, printable."""
    text = data[:80].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(data) > 80 else ""))
