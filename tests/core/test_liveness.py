"""Liveness and efficiency regressions found in review: a takeover that must fetch for long,
duplicate grants, retransmission after stalls, and replies about entries cut in the same batch."""

from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import Append, AppendAck
from quorapay.core.ready import LeadershipEnded
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex, NodeId
from tests.core.harness import InFlight, ReplicaCluster, account


def one_hop_per_tick(cluster: ReplicaCluster, ticks: int) -> None:
    """Deliver what is on the wire now, then tick: a network slower than a tick."""
    for _ in range(ticks):
        for _ in range(len(cluster.network)):
            cluster.deliver_one()
        cluster.tick()


def test_a_takeover_that_fetches_for_longer_than_the_election_timeout_completes() -> None:
    cluster = ReplicaCluster(("n1", "n2", "n3", "n4", "n5"), Timing(max_append_weight=1))
    for node in ("n2", "n3", "n4"):
        cluster.seed_log(node, [1] * 60)  # 60 fetches, one entry each, one hop per tick
    cluster.grant("n1", 2)
    one_hop_per_tick(cluster, 300)
    assert not [o for o in cluster.nodes["n1"].outcomes if isinstance(o, LeadershipEnded)]
    assert cluster["n1"].serving
    assert cluster["n1"].last_index == 61


def test_the_same_grant_reported_twice_changes_nothing() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    p = cluster.propose("n1", account("alice"))
    cluster.grant("n1", 1)
    assert not [o for o in cluster.nodes["n1"].outcomes if isinstance(o, LeadershipEnded)]
    assert cluster["n1"].serving
    cluster.stabilize()
    assert cluster["n1"].commit_index >= cluster.accepted("n1", p).index


def appends_to(cluster: ReplicaCluster, node: str) -> list[Append]:
    return [m.message for m in cluster.network
            if m.dst == node and isinstance(m.message, Append) and m.message.entries]


def test_a_follower_missed_during_takeover_gets_only_what_it_lacks() -> None:
    cluster = ReplicaCluster(timing=Timing(max_append_weight=10))
    for node in ("n1", "n2", "n3"):
        cluster.seed_log(node, [1] * 1000)
    cluster.cut("n1", "n3")
    cluster.grant("n1", 2)
    cluster.deliver_all()
    assert cluster["n1"].role is Role.LEADER
    cluster.tick(cluster.timing.retransmit_ticks, only=("n1",))
    cluster.heal()
    shipped = 0

    def count(message: InFlight) -> bool:
        nonlocal shipped
        if message.dst == "n3" and isinstance(message.message, Append):
            shipped += len(message.message.entries)
        return False

    for _ in range(50):
        cluster.deliver_all(drop=count)
        cluster.tick()
    assert cluster["n3"].commit_index == 1001
    assert shipped < 20  # it lacked one entry, not a thousand


def test_the_first_entry_after_an_idle_period_is_not_resent_at_once() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize(ticks=20)
    cluster.propose("n1")
    cluster.tick(only=("n1",))  # the ack is not back within one tick: no reason to resend
    assert len(appends_to(cluster, "n2")) == 1


def barrier(index: int, epoch: int) -> LogEntry:
    return LogEntry(index=LogIndex(index), epoch=Epoch(epoch), payload=Commands(commands=()))


def test_no_ack_is_sent_for_entries_cut_later_in_the_same_batch() -> None:
    cluster = ReplicaCluster()
    old = Append(epoch=Epoch(1), prev_index=LogIndex(0), prev_epoch=Epoch(0),
                 entries=(barrier(1, 1), barrier(2, 1)), commit=LogIndex(0), seq=0)
    new = Append(epoch=Epoch(2), prev_index=LogIndex(0), prev_epoch=Epoch(0),
                 entries=(barrier(1, 2),), commit=LogIndex(0), seq=0)
    cluster.step("n2", MessageReceived(sender=NodeId("n1"), message=old),
                 MessageReceived(sender=NodeId("n3"), message=new))
    acks = [(m.dst, m.message) for m in cluster.network if isinstance(m.message, AppendAck)]
    assert acks == [(NodeId("n3"), AppendAck(epoch=Epoch(2), match_index=LogIndex(1), seq=0))]
    assert cluster.logs()["n2"] == [(1, 2)]
