"""Whatever someone with ZooKeeper access writes, the coordinator reports it and carries on:
garbage, deleted or huge epochs; garbage, persistent or squatted leader znodes; squatted
candidates; operations refused. Never an exception, never an election stopped for good."""

from __future__ import annotations

import pytest

from quorapay.core import znodes
from quorapay.core.coordinator import (
    CoordinationWarning,
    Coordinator,
    Create,
    Delete,
    EpochSeen,
    Replied,
    RetryDue,
    ZkError,
)
from quorapay.core.types import Epoch, NodeId
from tests.core.test_coordinator import ZkWorld, started

EPOCH = "/quorapay/t/epoch"
LEADER = "/quorapay/t/leader"
MEMBERS = ("n1", "n2", "n3")


class Members(ZkWorld):
    """A ZkWorld whose coordinators know the cluster's members, as a node's do."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.coordinators = {n: Coordinator(cluster="t", node=NodeId(n), peer_url="p",
                                            client_url="c", members=tuple(map(NodeId, MEMBERS)))
                             for n in names}


def world_of(*names: str) -> Members:
    """Started; every node's replica has followed the first leader (epoch 1)."""
    world = Members(*names)
    for name in names:
        world.connect(name)
        world.run()
    for name in names:
        world.feed(name, EpochSeen(epoch=Epoch(1)))
    return world


def attacker(world: ZkWorld) -> int:
    return world.zk.open_session(now=0, timeout=10)


def overwrite(world: ZkWorld, path: str, data: bytes, *, ephemeral: bool = False) -> None:
    """What someone holding the credential can do: replace a znode's content."""
    session = attacker(world)
    _, _, deleted = world.zk.execute(session, Delete(path=path, version=-1))
    _, error, created = world.zk.execute(session, Create(path=path, data=data,
                                                        ephemeral=ephemeral))
    assert error is None
    world.deliver(deleted + created)


def warnings(world: ZkWorld, node: str) -> list[str]:
    return [i.message for i in world.inputs[node] if isinstance(i, CoordinationWarning)]


def epoch_in_zookeeper(world: ZkWorld) -> int:
    record = znodes.parse_epoch(world.zk.data(EPOCH) or b"")
    assert record is not None
    return record.epoch


@pytest.mark.parametrize("garbage", [b"\x00\xffnot json", b'{"epoch": 9223372036854775808}',
                                     b'{"epoch": -3}', b"", b'{"epoch": "7"}'])
def test_a_garbage_epoch_is_overwritten_by_the_next_claim(garbage: bytes) -> None:
    world = world_of("n1", "n2", "n3")
    overwrite(world, EPOCH, garbage)
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [2]  # above the highest epoch n2 has seen (1)
    assert epoch_in_zookeeper(world) == 2
    assert any("not an epoch" in w for w in warnings(world, "n2"))


def test_a_deleted_epoch_is_recreated_from_the_highest_epoch_seen() -> None:
    world = world_of("n1", "n2", "n3")
    world.zk.execute(attacker(world), Delete(path=EPOCH, version=-1))
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [2]
    assert any("missing" in w for w in warnings(world, "n2"))


@pytest.mark.parametrize("epoch", [2**53 - 1, 2**53 - 2, 2**21])
def test_an_epoch_far_above_every_one_seen_is_not_believed(epoch: int) -> None:
    world = world_of("n1", "n2", "n3")
    overwrite(world, EPOCH, b'{"epoch": %d}' % epoch)  # would use up the range of epochs
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [2]  # repaired from the highest epoch seen
    assert any("above the highest epoch seen" in w for w in warnings(world, "n2"))


def test_an_epoch_ahead_by_a_plausible_number_of_elections_is_used() -> None:
    world = world_of("n1", "n2", "n3")
    overwrite(world, EPOCH, b'{"epoch": 5000}')  # n2 missed a few thousand elections
    world.relinquish("n1", 1)
    world.run()
    assert world.grants("n2") == [5001]


@pytest.mark.parametrize("garbage", [b"garbage", b'{"node": "n1"}', b"[]"])
def test_a_garbage_leader_znode_is_ignored_and_removed_by_the_next_leader(
        garbage: bytes) -> None:
    world = world_of("n1", "n2", "n3")
    world.relinquish("n1", 1)  # n1 deletes its leader znode; n2 claims ...
    overwrite(world, LEADER, garbage, ephemeral=True)  # ... but a squatter got there first
    world.run()
    assert world.grants("n2") == [2]
    assert world.coordinators["n3"].zk_leader is not None
    assert world.coordinators["n3"].zk_leader.node == "n2"
    assert any("removing the leader znode" in w for w in warnings(world, "n2"))


def test_a_persistent_leader_znode_naming_a_member_is_not_a_leader() -> None:
    world = world_of("n1", "n2")
    world.relinquish("n1", 1)
    forged = znodes.encode(znodes.LeaderInfo(node=NodeId("n1"), epoch=7, peer_url="p",
                                             client_url="c"))
    overwrite(world, LEADER, forged)  # persistent: it would outlive every session
    world.run()
    assert world.grants("n2") == [2]


def test_a_leader_znode_naming_a_non_member_is_removed() -> None:
    world = world_of("n1", "n2", "n3")
    world.relinquish("n1", 1)
    forged = znodes.encode(znodes.LeaderInfo(node=NodeId("mallory"), epoch=99, peer_url="p",
                                             client_url="c"))
    overwrite(world, LEADER, forged, ephemeral=True)
    world.run()
    assert world.grants("n2") == [2]


def test_a_candidate_of_a_non_member_does_not_hold_up_the_queue() -> None:
    world = world_of("n1", "n2")
    session = attacker(world)
    world.zk.execute(session, Create(path="/quorapay/t/election/mallory__x__", ephemeral=True,
                                     sequential=True))
    world.relinquish("n1", 1)  # n1 rejoins behind mallory's candidate and n2
    world.run()
    assert world.grants("n2") == [2]
    world.relinquish("n2", 2)
    world.run()
    assert world.grants("n1") == [1, 3]  # mallory, ahead in the queue, was passed over


def test_a_refused_operation_is_reported_and_retried_not_raised() -> None:
    world = started("n1")
    node = world.coordinators["n1"]
    world.relinquish("n1", 1)
    outputs = []
    for _ in range(20):  # answer every request with NO_AUTH, as ZooKeeper would
        if not world.pending:
            break
        _, request = world.pending.popleft()
        outputs += node.step(Replied(id=request.id, error=ZkError.NO_AUTH))
    messages = [o.message for o in outputs if isinstance(o, CoordinationWarning)]
    assert messages and "ACL" in messages[0]
    assert not world.pending  # waiting for a retry, not spinning
    world.feed("n1", RetryDue())
    assert world.pending  # ... and it tries again, and leads again
    world.run()
    assert world.coordinators["n1"].granted is not None


def test_a_deleted_election_folder_is_recreated() -> None:
    world = world_of("n1", "n2")
    session = attacker(world)
    for child in world.candidates():
        world.zk.execute(session, Delete(path=f"/quorapay/t/election/{child}", version=-1))
    world.zk.execute(session, Delete(path="/quorapay/t/election", version=-1))
    world.relinquish("n1", 1)
    world.run()
    for _ in range(3):
        world.feed("n1", RetryDue())
        world.feed("n2", RetryDue())
        world.run()
    assert world.grants("n1")[-1] > 1 or world.grants("n2")
