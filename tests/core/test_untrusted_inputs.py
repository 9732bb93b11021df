"""What the replica does when its inputs break the assumptions of a healthy cluster: an epoch
granted twice (ZooKeeper's epoch record lost or rewritten), a follower whose disk was wiped, and
a peer that sends what no correct node sends. Safety holds and nothing raises."""

from quorapay.core.messages import Append, Promise, RefusalReason, Refused
from quorapay.core.ready import LeadershipEnded, PeerMisbehaved
from quorapay.core.replica import Role
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex, NodeId
from tests.core.harness import ReplicaCluster, transfer
from tests.core.test_snapshots import converged, elect, pay


def ended(cluster: ReplicaCluster, node: str) -> list[LeadershipEnded]:
    return [o for o in cluster.nodes[NodeId(node)].outcomes if isinstance(o, LeadershipEnded)]


def misbehaved(cluster: ReplicaCluster, node: str) -> list[PeerMisbehaved]:
    return [o for o in cluster.nodes[NodeId(node)].outcomes if isinstance(o, PeerMisbehaved)]


# ---------------------------------------------------------------- one leader per epoch


def repeated_grant(*, restart_n3: bool) -> ReplicaCluster:
    """n1 leads epoch 5 with n3 while n2 is cut off from both; the epoch znode is lost, and n2,
    which has seen only epoch 1, repairs it and is granted 5 as well. n1 and n2 cannot talk."""
    cluster = ReplicaCluster()
    elect(cluster, "n1", 1)
    cluster.isolate("n2")
    cluster.grant("n1", 5)
    cluster.stabilize()
    pay(cluster, "n1", 3)
    cluster.stabilize()
    assert cluster["n2"].promised_epoch == 1
    if restart_n3:
        cluster.crash("n3")
        cluster.restart("n3")
        assert cluster["n3"].promised_to == "n1"
    cluster.heal()
    cluster.cut("n1", "n2")
    cluster.grant("n2", 5)
    cluster.stabilize()
    return cluster


def test_a_second_grant_of_the_same_epoch_is_refused_and_relinquished() -> None:
    cluster = repeated_grant(restart_n3=False)
    assert cluster.leaders() == [NodeId("n1")]
    assert cluster["n1"].serving and cluster["n1"].epoch == 5
    relinquished = ended(cluster, "n2")
    assert relinquished and relinquished[-1].relinquish and relinquished[-1].epoch == 5
    assert cluster["n2"].highest_epoch_seen == 5  # its next claim goes above 5
    cluster.heal()
    cluster.grant("n2", 6)
    cluster.stabilize()
    assert cluster.leaders() == [NodeId("n2")]
    converged(cluster, "n1", "n2", "n3")


def test_whom_an_epoch_was_promised_to_survives_a_restart() -> None:
    cluster = repeated_grant(restart_n3=True)
    assert cluster.leaders() == [NodeId("n1")]
    assert ended(cluster, "n2")[-1].relinquish


def test_a_stale_refusal_does_not_depose_the_leader_of_its_promised_epoch() -> None:
    cluster = ReplicaCluster()
    elect(cluster, "n1", 5)
    cluster.step("n1", *[])
    from quorapay.core.inputs import MessageReceived
    cluster.step("n1", MessageReceived(sender=NodeId("n2"), message=Refused(
        epoch=Epoch(4), promised_epoch=Epoch(5), reason=RefusalReason.STALE_EPOCH)))
    assert cluster["n1"].serving


# ---------------------------------------------------------------- a wiped follower


def test_a_follower_with_an_empty_data_dir_catches_up_with_the_same_leader() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 5)
    cluster.stabilize()
    cluster.wipe("n2")
    cluster.stabilize()
    assert cluster["n1"].serving and cluster["n1"].epoch == 1  # the same leader all along
    pay(cluster, "n1", 2, prefix="after")
    cluster.stabilize()
    converged(cluster, "n1", "n2", "n3")


def test_a_wiped_follower_behind_the_compaction_point_gets_a_snapshot() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 8)
    cluster.stabilize()
    for node in cluster.ids:
        cluster.compact(node, 6)
    cluster.wipe("n3")
    cluster.stabilize()
    converged(cluster, "n1", "n2", "n3")
    assert cluster["n3"].log.start >= 6  # it started from the snapshot


# ---------------------------------------------------------------- peers that misbehave


def barrier(index: int, epoch: int) -> LogEntry:
    return LogEntry(index=LogIndex(index), epoch=Epoch(epoch), payload=Commands(commands=()))


def test_an_append_rewriting_a_committed_entry_is_dropped_and_reported() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 3)
    cluster.stabilize()
    committed = cluster["n2"].commit_index
    before = cluster.logs()["n2"]
    from quorapay.core.inputs import MessageReceived
    forged = Append(epoch=Epoch(1), prev_index=LogIndex(1), prev_epoch=Epoch(1),
                    entries=(barrier(2, 1), barrier(3, 1)), commit=LogIndex(0), seq=0)
    # entries 2 and 3 exist with epoch 1 already: the same entries, nothing to do
    cluster.step("n2", MessageReceived(sender=NodeId("n1"), message=forged))
    cluster.crash("n3")
    rewrite = Append(epoch=Epoch(2), prev_index=LogIndex(1), prev_epoch=Epoch(1),
                     entries=(barrier(2, 2),), commit=LogIndex(0), seq=0)
    cluster.step("n2", MessageReceived(sender=NodeId("n3"), message=rewrite))
    assert cluster.logs()["n2"] == before and cluster["n2"].commit_index == committed
    problems = misbehaved(cluster, "n2")
    assert problems and problems[-1].peer == "n3" and "committed" in problems[-1].detail


def test_a_promise_ending_below_the_commit_index_does_not_truncate_committed_entries() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 3)
    cluster.stabilize()
    committed = cluster["n2"].commit_index
    cluster.crash("n1")
    cluster.grant("n2", 2)
    from quorapay.core.inputs import MessageReceived
    lie = Promise(epoch=Epoch(2), last_index=LogIndex(1), last_epoch=Epoch(2))
    cluster.network.clear()
    cluster.step("n2", MessageReceived(sender=NodeId("n3"), message=lie))
    assert misbehaved(cluster, "n2")
    assert cluster["n2"].role is Role.RECOVERING  # waiting for an honest majority
    assert cluster["n2"].log.last_index >= committed
    cluster.restart("n1")
    cluster.stabilize()
    assert cluster["n2"].serving
    converged(cluster, "n1", "n2")


def test_transfers_still_commit_after_misbehaviour_was_dropped() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    from quorapay.core.inputs import MessageReceived
    cluster.step("n2", MessageReceived(sender=NodeId("n3"), message=Append(
        epoch=Epoch(1), prev_index=LogIndex(0), prev_epoch=Epoch(0),
        entries=(barrier(1, 1), barrier(2, 1)), commit=LogIndex(2), seq=0)))
    cluster.propose("n1", transfer("t", "a", "b", 1))
    cluster.stabilize()
    converged(cluster, "n1", "n3")
