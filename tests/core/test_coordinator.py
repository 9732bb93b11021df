"""The sans-IO coordinator against a model ZooKeeper server: election order, epochs by
compare-and-set, relinquishing, session expiry, and replies lost to connection loss."""

from __future__ import annotations

from collections import deque

from quorapay.core import znodes
from quorapay.core.coordinator import (
    ClaimEpoch,
    ConnectionResumed,
    ConnectionSuspended,
    Coordinator,
    Create,
    EligibilityChanged,
    EpochSeen,
    Event,
    Get,
    GetChildren,
    RelinquishRequested,
    Replied,
    Request,
    SessionExpired,
    SessionStarted,
    SessionState,
    WatchFired,
    ZkError,
)
from quorapay.core.inputs import (
    CoordinationResumed,
    CoordinationSuspended,
    Input,
    LeadershipGranted,
    LeadershipRevoked,
)
from quorapay.core.types import Epoch, NodeId
from quorapay.sim.zookeeper import ZooKeeperModel


class ZkWorld:
    """Coordinators talking to one model server; requests execute in FIFO order on `run()`."""

    def __init__(self, *names: str) -> None:
        self.zk = ZooKeeperModel()
        self.coordinators = {n: Coordinator(cluster="t", node=NodeId(n), peer_url=f"ws://{n}/p",
                                            client_url=f"ws://{n}/c") for n in names}
        self.sessions: dict[str, int] = {}
        self.inputs: dict[str, list[Input]] = {n: [] for n in names}
        self.pending: deque[tuple[str, Request]] = deque()
        self.connected: set[str] = set()

    def feed(self, node: str, event: Event) -> None:
        for output in self.coordinators[node].step(event):
            if isinstance(output, Request):
                self.pending.append((node, output))
            else:
                self.inputs[node].append(output)

    def connect(self, node: str) -> None:
        self.sessions[node] = self.zk.open_session(now=0, timeout=10)
        self.connected.add(node)
        token = f"tok{self.sessions[node]}"
        self.feed(node, SessionStarted(session=self.sessions[node], token=token))

    def run(self, *, lose_replies_of: str | None = None) -> None:
        """Execute pending requests; replies to `lose_replies_of` are lost after executing."""
        for _ in range(10_000):
            if not self.pending:
                return
            node, request = self.pending.popleft()
            if node not in self.connected:
                self.feed(node, Replied(id=request.id, error=ZkError.CONNECTION_LOSS))
                continue
            value, error, fired = self.zk.execute(self.sessions[node], request.op)
            if node == lose_replies_of:
                self.connected.discard(node)
                self.feed(node, ConnectionSuspended())
                self.feed(node, Replied(id=request.id, error=ZkError.CONNECTION_LOSS))
            else:
                self.feed(node, Replied(id=request.id, value=value, error=error))
            self.deliver(fired)
        raise AssertionError("requests never settled")

    def deliver(self, fired: list[tuple[int, str]]) -> None:
        owners = {session: node for node, session in self.sessions.items()}
        for session, path in fired:
            if session in owners:
                self.feed(owners[session], WatchFired(path=path))

    def reconnect(self, node: str) -> None:
        self.connected.add(node)
        if self.zk.alive(self.sessions[node]):
            self.feed(node, ConnectionResumed())
        else:
            self.feed(node, SessionExpired())
            self.connect(node)

    def expire(self, node: str) -> None:
        self.deliver(self.zk.close_session(self.sessions[node]))
        self.connected.discard(node)

    def grants(self, node: str) -> list[int]:
        return [i.epoch for i in self.inputs[node] if isinstance(i, LeadershipGranted)]

    def relinquish(self, node: str, epoch: int) -> None:
        self.feed(node, RelinquishRequested(epoch=Epoch(epoch)))

    def candidates(self) -> list[str]:
        value, _, _ = self.zk.execute(next(iter(self.sessions.values())),
                                      GetChildren(path="/quorapay/t/election"))
        return list(value)

    def run_until(self, node: str, kind: type) -> None:
        """Execute requests in order until `node`'s next one is a `kind` operation."""
        while self.pending and not (self.pending[0][0] == node
                                    and isinstance(self.pending[0][1].op, kind)):
            owner, request = self.pending.popleft()
            value, error, fired = self.zk.execute(self.sessions[owner], request.op)
            self.feed(owner, Replied(id=request.id, value=value, error=error))
            self.deliver(fired)


def started(*names: str) -> ZkWorld:
    world = ZkWorld(*names)
    for name in names:
        world.connect(name)
        world.run()
    return world


def test_the_first_candidate_leads_with_epoch_1_and_the_others_wait() -> None:
    world = started("n1", "n2", "n3")
    assert world.grants("n1") == [1]
    assert world.grants("n2") == world.grants("n3") == []
    assert world.coordinators["n2"].zk_leader.node == "n1"
    leader = znodes.parse_leader(world.zk.data("/quorapay/t/leader"))
    assert leader is not None
    assert (leader.node, leader.epoch) == ("n1", 1)


def test_relinquishing_passes_leadership_on_with_a_larger_epoch() -> None:
    world = started("n1", "n2", "n3")
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [2]  # only the predecessor's watcher moved
    assert world.grants("n3") == []
    world.relinquish("n2", 2)
    world.run()
    assert world.grants("n3") == [3]
    world.relinquish("n3", 3)
    world.run()
    assert world.grants("n1") == [1, 4]  # n1 rejoined at the back and comes round again


def test_a_stale_relinquish_is_ignored() -> None:
    world = started("n1", "n2")
    world.relinquish("n1", 0)
    world.run()
    assert world.coordinators["n1"].granted == 1
    assert world.grants("n2") == []


def test_expiry_revokes_and_the_next_candidate_leads() -> None:
    world = started("n1", "n2", "n3")
    world.expire("n1")
    world.run()
    assert world.grants("n2") == [2]
    world.reconnect("n1")
    world.run()
    assert isinstance(world.inputs["n1"][-1], CoordinationResumed)
    assert LeadershipRevoked() in world.inputs["n1"]
    assert world.coordinators["n1"].granted is None
    assert len(world.candidates()) == 3  # n1 stands again, with its new session


def test_a_lost_create_reply_finds_its_own_candidate_instead_of_making_a_second() -> None:
    world = ZkWorld("n1", "n2")
    world.connect("n2")
    world.run()
    world.connect("n1")
    world.run_until("n1", Create)  # the epoch znode (exists already)
    world.run_until("n1", GetChildren)  # ... then the member znode, then the election list
    world.run_until("n1", Create)  # the candidate
    world.run(lose_replies_of="n1")  # the candidate is created, but n1 never hears so
    assert world.coordinators["n1"].state is SessionState.SUSPENDED
    world.reconnect("n1")
    world.run()
    assert len([c for c in world.candidates() if c.startswith("n1__")]) == 1


def test_a_lost_claim_reply_is_recovered_as_the_same_single_grant() -> None:
    world = ZkWorld("n1")
    world.connect("n1")
    world.run_until("n1", ClaimEpoch)
    world.run(lose_replies_of="n1")  # the epoch moved and the leader znode exists: reply lost
    assert world.grants("n1") == []
    world.reconnect("n1")
    world.run()
    assert world.grants("n1") == [1]
    assert CoordinationSuspended() in world.inputs["n1"]


def test_the_next_claim_goes_above_every_epoch_the_replica_has_seen() -> None:
    world = started("n1", "n2")
    world.feed("n2", EpochSeen(epoch=Epoch(41)))
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [42]


def test_a_member_znode_left_by_an_earlier_process_is_replaced() -> None:
    world = started("n1")
    old_session = world.sessions["n1"]
    world.connect("n1")  # a restarted process: new session while the old one lingers
    world.run()
    (_, stat), _, _ = world.zk.execute(world.sessions["n1"], Get(path="/quorapay/t/members/n1"))
    assert stat.owner == world.sessions["n1"] != old_session


def test_every_fiber_that_lost_its_connection_carries_on_when_it_returns() -> None:
    # Found by the simulator (seed 85): both fibers waited for the connection; only one woke,
    # and the election fiber never stood again -- no leader, for ever.
    world = started("n1", "n2")
    world.connected.discard("n1")
    world.feed("n1", ConnectionSuspended())
    world.relinquish("n1", 1)  # the election fiber's next request fails: connection lost
    world.feed("n1", WatchFired(path="/quorapay/t/leader"))  # ... and the leader watcher's
    world.run()
    world.reconnect("n1")
    world.run()
    fibers = world.coordinators["n1"]._fibers
    assert not [w for _, w in fibers if type(w).__name__ == "_WaitConnected"]
    assert world.grants("n2") == [2]


def test_an_ineligible_node_leaves_the_election_until_it_is_eligible_again() -> None:
    world = started("n1", "n2", "n3")
    world.feed("n1", EligibilityChanged(eligible=False))  # n1's clock went off
    world.relinquish("n1", 1)  # its replica refused to go on leading
    world.run()
    assert world.grants("n2") == [2]
    assert not any(c.startswith("n1") for c in world.candidates())  # it did not rejoin
    world.relinquish("n2", 2)
    world.run()
    assert world.grants("n3") == [3] and world.grants("n1") == [1]
    world.feed("n1", EligibilityChanged(eligible=True))
    world.run()
    assert any(c.startswith("n1") for c in world.candidates())  # back in the queue
    world.relinquish("n3", 3)  # the queue is n2 (rejoined), then n1
    world.run()
    world.relinquish("n2", 4)
    world.run()
    assert world.grants("n2") == [2, 4] and world.grants("n1") == [1, 5]


def test_an_ineligible_candidate_waiting_in_the_queue_steps_out_of_the_way() -> None:
    world = started("n1", "n2", "n3")  # the queue: n1 (leading), n2, n3
    world.feed("n2", EligibilityChanged(eligible=False))
    world.run()
    assert not any(c.startswith("n2") for c in world.candidates())
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n3") == [2] and world.grants("n2") == []  # n3 did not wait for n2
    world.feed("n2", EligibilityChanged(eligible=True))
    world.run()
    assert [c.split("__")[0] for c in sorted(world.candidates(), key=lambda c: c[-10:])] == [
        "n3", "n1", "n2"]  # back, at the end of the queue


def test_a_node_withdrawing_after_a_lost_claim_reply_deletes_the_leader_znode_it_left() -> None:
    """Found by the simulator (seed 3171): the claim succeeded, its reply was lost, and by the
    time the connection came back the node was ineligible. It withdrew its candidate but left the
    leader znode, so every other candidate waited for it as long as its session lived."""
    world = ZkWorld("n1", "n2")
    world.connect("n1")
    world.run_until("n1", ClaimEpoch)
    world.run(lose_replies_of="n1")  # the claim lands; n1 hears only a connection loss
    assert world.zk.data("/quorapay/t/leader") is not None and world.grants("n1") == []
    world.feed("n1", EligibilityChanged(eligible=False))
    world.connect("n2")
    world.run()
    world.reconnect("n1")
    world.run()
    assert world.grants("n1") == [] and world.grants("n2") == [2]
    assert not any(c.startswith("n1") for c in world.candidates())
