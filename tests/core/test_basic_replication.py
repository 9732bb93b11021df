"""Steady-state replication: election takeover, quorum commit, follower apply."""

from quorapay.core.ledger import Status
from quorapay.core.ready import LeadershipEnded, ProposalRejected, Unavailable
from quorapay.core.replica import Role
from tests.core.harness import ReplicaCluster, account, transfer


def elect(cluster: ReplicaCluster, node: str = "n1", epoch: int = 1) -> None:
    cluster.grant(node, epoch)
    cluster.stabilize()
    assert cluster[node].serving


def test_granted_leader_commits_its_epoch_start_then_serves() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    assert cluster["n1"].role is Role.RECOVERING and not cluster["n1"].serving
    cluster.stabilize()
    assert cluster["n1"].role is Role.LEADER and cluster["n1"].serving
    assert all(cluster[n].commit_index == 1 for n in ("n1", "n2", "n3"))
    cluster.check_safety()


def test_transfer_commits_with_quorum_and_every_replica_applies_it() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.propose("n1", account("bank", issuer=True), account("alice"))
    p = cluster.propose("n1", transfer("t1", "bank", "alice", 500))
    cluster.stabilize()
    index = cluster.accepted("n1", p).index
    for node in cluster.nodes.values():
        assert node.results[index][0].status is Status.OK
        assert node.ledger.accounts["alice"].balance == 500
        assert node.ledger.totals() == {"USD": 0}
    cluster.check_safety()


def test_commits_with_one_follower_down() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.crash("n3")
    p = cluster.propose("n1", account("alice"))
    cluster.stabilize()
    index = cluster.accepted("n1", p).index
    assert cluster["n1"].commit_index >= index
    assert cluster["n2"].commit_index >= index


def test_nothing_commits_without_a_majority_and_the_leader_steps_down() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    before = cluster["n1"].commit_index
    cluster.crash("n2")
    cluster.crash("n3")
    p = cluster.propose("n1", account("alice"))
    cluster.stabilize(ticks=cluster.timing.election_timeout_ticks + 5)
    assert cluster.accepted("n1", p) is not None
    assert cluster["n1"].commit_index == before
    assert cluster["n1"].role is Role.FOLLOWER
    ended = [o for o in cluster.nodes["n1"].outcomes if isinstance(o, LeadershipEnded)]
    assert ended and ended[-1].relinquish


def test_follower_redirects_proposals_to_the_leader() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    p = cluster.propose("n2", account("alice"))
    rejected = [o for o in cluster.nodes["n2"].outcomes if isinstance(o, ProposalRejected)]
    assert rejected == [ProposalRejected(proposal=p, reason=Unavailable.NOT_LEADER, leader="n1")]


def test_restarted_follower_recovers_from_disk_and_catches_up() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.propose("n1", account("bank", issuer=True), account("alice"))
    cluster.stabilize()
    cluster.crash("n3")
    for i in range(20):
        cluster.propose("n1", transfer(f"t{i}", "bank", "alice", 1))
        cluster.deliver_all()
    cluster.restart("n3")
    cluster.stabilize(ticks=20)
    assert cluster["n3"].applied_index == cluster["n1"].commit_index
    assert cluster.nodes["n3"].ledger.digest() == cluster.nodes["n1"].ledger.digest()
    cluster.check_safety()
