"""Linearizable reads (leadership confirmed by a majority) and ZooKeeper session events."""

from quorapay.core.inputs import CoordinationResumed, CoordinationSuspended
from quorapay.core.ready import (
    LeadershipEnded,
    ProposalRejected,
    ReadsConfirmed,
    ReadsRejected,
    Unavailable,
)
from quorapay.core.replica import Role
from tests.core.harness import ReplicaCluster, account


def outcomes(cluster: ReplicaCluster, node: str, kind: type) -> list:
    return [o for o in cluster.nodes[node].outcomes if isinstance(o, kind)]


def serving_cluster() -> ReplicaCluster:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    return cluster


def test_read_is_confirmed_only_after_a_majority_answers_a_new_round() -> None:
    cluster = serving_cluster()
    cluster.propose("n1", account("alice"))
    cluster.deliver_all()
    (read,) = cluster.read("n1")
    assert not outcomes(cluster, "n1", ReadsConfirmed)  # the round is on the wire
    cluster.deliver_all()
    confirmed = outcomes(cluster, "n1", ReadsConfirmed)
    assert [c.reads for c in confirmed] == [(read,)]
    assert confirmed[0].index == cluster["n1"].commit_index


def test_isolated_leader_never_confirms_a_read() -> None:
    cluster = serving_cluster()
    cluster.isolate("n1")
    cluster.read("n1")
    cluster.stabilize(ticks=cluster.timing.election_timeout_ticks + 2)
    assert not outcomes(cluster, "n1", ReadsConfirmed)
    rejected = outcomes(cluster, "n1", ReadsRejected)
    assert rejected and rejected[0].reason is Unavailable.NOT_LEADER
    assert cluster["n1"].role is Role.FOLLOWER


def test_reads_share_one_round() -> None:
    cluster = serving_cluster()
    reads = cluster.read("n1", 5)
    cluster.deliver_all()
    confirmed = outcomes(cluster, "n1", ReadsConfirmed)
    assert sorted(r for c in confirmed for r in c.reads) == reads
    assert len(confirmed) == 1


def test_suspended_leader_takes_no_writes_and_commits_nothing_until_resumed() -> None:
    cluster = serving_cluster()
    p1 = cluster.propose("n1", account("alice"))
    cluster.step("n1", CoordinationSuspended())
    cluster.stabilize()
    assert cluster["n1"].commit_index == 1  # alice's entry is replicated but not committed
    p2 = cluster.propose("n1", account("bob"))
    assert ProposalRejected(proposal=p2, reason=Unavailable.SUSPENDED, leader="n1") in \
        outcomes(cluster, "n1", ProposalRejected)
    cluster.step("n1", CoordinationResumed())
    cluster.stabilize()
    assert cluster["n1"].commit_index == cluster.accepted("n1", p1).index


def test_revoked_leader_becomes_a_follower_without_relinquishing_again() -> None:
    cluster = serving_cluster()
    cluster.revoke("n1")
    assert cluster["n1"].role is Role.FOLLOWER
    ended = outcomes(cluster, "n1", LeadershipEnded)
    assert len(ended) == 1 and not ended[0].relinquish


def test_single_node_cluster_commits_and_reads_alone() -> None:
    cluster = ReplicaCluster(("solo",))
    cluster.grant("solo", 1)
    cluster.stabilize()
    p = cluster.propose("solo", account("alice"))
    (read,) = cluster.read("solo")
    cluster.stabilize()
    assert cluster["solo"].commit_index == cluster.accepted("solo", p).index
    assert [c.reads for c in outcomes(cluster, "solo", ReadsConfirmed)] == [(read,)]
