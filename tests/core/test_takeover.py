"""Takeover with divergent logs: a new leader keeps every committed entry, drops only uncommitted.

The situations are those of Figures 7 and 8 of the Raft paper (Ongaro & Ousterhout, 2014),
translated: ZooKeeper's grant replaces the vote, promises replace the election restriction.
"""

from collections.abc import Callable

from quorapay.core.messages import Append
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from quorapay.core.types import Epoch
from tests.core.harness import InFlight, ReplicaCluster

FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def fig7_cluster() -> ReplicaCluster:
    cluster = ReplicaCluster(("L", *FIG7_FOLLOWERS))
    cluster.seed_log("L", FIG7_LEADER)
    for name, epochs in FIG7_FOLLOWERS.items():
        cluster.seed_log(name, epochs)
    return cluster


def epochs_of(cluster: ReplicaCluster, node: str) -> list[int]:
    return [epoch for _, epoch in cluster.logs()[node]]


def test_fig7_new_leader_adopts_the_most_up_to_date_log_among_the_first_majority() -> None:
    cluster = fig7_cluster()
    cluster.crash("a")
    cluster.crash("b")
    cluster.grant("L", 8)  # promises from L, c, d, e form the first majority (4 of 7)
    cluster.stabilize()
    assert cluster["L"].serving
    expected = FIG7_FOLLOWERS["d"] + [8]  # d's log is the most up to date there: (7, 12)
    for node in ("L", "c", "d", "e", "f"):
        assert epochs_of(cluster, node) == expected, node
    cluster.restart("a")
    cluster.restart("b")
    cluster.stabilize(ticks=20)
    for node in cluster.ids:
        assert epochs_of(cluster, node) == expected, node
    cluster.check_safety()


def test_fig7_promises_in_peer_order_pick_the_best_of_that_majority() -> None:
    cluster = fig7_cluster()
    cluster.grant("L", 8)  # a, b, c promise first: with L that is a majority; c's log is best
    cluster.stabilize()
    for node in cluster.ids:
        assert epochs_of(cluster, node) == FIG7_FOLLOWERS["c"] + [8], node
    cluster.check_safety()


def test_fig7_without_d_and_c_the_leader_log_wins_and_divergent_suffixes_are_cut() -> None:
    cluster = fig7_cluster()
    cluster.crash("c")
    cluster.crash("d")
    cluster.grant("L", 8)
    cluster.stabilize()
    assert cluster["L"].serving
    for node in ("L", "a", "b", "e", "f"):
        assert epochs_of(cluster, node) == [*FIG7_LEADER, 8], node
    # c and d come back: their uncommitted suffixes are replaced by the leader's log
    cluster.restart("c")
    cluster.restart("d")
    cluster.stabilize(ticks=20)
    for node in cluster.ids:
        assert epochs_of(cluster, node) == [*FIG7_LEADER, 8], node
    cluster.check_safety()


def test_leader_with_a_stale_log_fetches_what_it_lacks_in_chunks() -> None:
    cluster = ReplicaCluster(("n1", "n2", "n3"), Timing(max_append_weight=3))
    cluster.seed_log("n1", [1, 1])
    cluster.seed_log("n2", [1, 1, 2, 2, 2, 2, 2, 2, 2])
    cluster.seed_log("n3", [1, 1, 2])
    cluster.grant("n1", 3)
    cluster.stabilize()
    assert cluster["n1"].serving
    for node in cluster.ids:
        assert epochs_of(cluster, node) == [1, 1, 2, 2, 2, 2, 2, 2, 2, 3]


def fig8_cluster(timing: Timing | None = None) -> ReplicaCluster:
    """Figure 8 (b), roughly: S1 led epoch 2 and wrote index 2; S5 led epoch 3 alone."""
    cluster = ReplicaCluster(("s1", "s2", "s3", "s4", "s5"), timing)
    cluster.seed_log("s1", [2, 2])
    for node in ("s2", "s3", "s4"):
        cluster.seed_log(node, [2])
    cluster.seed_log("s5", [2, 3])
    return cluster


def carries_epoch_once_index_held(cluster: ReplicaCluster, epoch: int, index: int
                                  ) -> Callable[[InFlight], bool]:
    """Drop Appends with entries of `epoch` to followers that already hold `index`."""
    return lambda m: isinstance(m.message, Append) and cluster[m.dst].last_index >= index and any(
        e.epoch == epoch for e in m.message.entries)


def test_fig8_old_epoch_entry_on_a_majority_is_not_committed_and_may_be_replaced() -> None:
    cluster = fig8_cluster(Timing(max_append_weight=1))  # one entry per Append
    cluster.crash("s5")
    cluster.cut("s1", "s4")
    cluster.grant("s1", 4)  # promises from s1 (2,2), s2 (2,1), s3 (2,1): s1's own log wins
    for _ in range(20):  # s2 and s3 get index 2 (the probe finds where) but never index 3
        cluster.deliver_all(drop=carries_epoch_once_index_held(cluster, 4, 2))
        cluster.tick()
    assert cluster["s1"].role is Role.LEADER
    assert [epochs_of(cluster, n) for n in ("s1", "s2", "s3")] == [[2, 2, 4], [2, 2], [2, 2]]
    # Index 2 (epoch 2) is on a majority and acknowledged, but only an entry of the leader's
    # own epoch commits, and index 3 (epoch 4) is on s1 alone.
    assert cluster["s1"].commit_index == 0
    cluster.crash("s1")
    cluster.network.clear()  # what s1 had on the wire is lost with it
    cluster.heal()
    cluster.restart("s5")
    cluster.grant("s5", 5)  # promises from s2 (2,2), s3 (2,2), s4 (2,1), s5 (3,2): s5 wins
    cluster.stabilize()
    cluster.restart("s1")
    cluster.stabilize(ticks=20)
    for node in cluster.ids:
        assert epochs_of(cluster, node) == [2, 3, 5], node  # index 2 of epoch 2 is replaced
    cluster.check_safety()


def test_fig8_once_the_leaders_own_entry_commits_older_entries_survive_every_takeover() -> None:
    cluster = fig8_cluster()
    cluster.crash("s5")
    cluster.grant("s1", 4)
    cluster.stabilize()
    assert cluster["s1"].commit_index == 3  # index 3 (epoch 4) committed, index 2 with it
    cluster.crash("s1")
    cluster.restart("s5")
    cluster.grant("s5", 5)
    cluster.stabilize()
    assert cluster["s5"].serving
    for node in ("s2", "s3", "s4", "s5"):
        assert epochs_of(cluster, node) == [2, 2, 4, 5], node
    cluster.check_safety()


def test_stale_leader_is_fenced_by_the_promised_epoch_and_steps_down() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    cluster.isolate("n1")  # n1 is a zombie: it still believes it leads epoch 1
    cluster.grant("n2", 2)
    cluster.stabilize()
    assert cluster["n2"].serving
    cluster.heal()
    p = cluster.propose("n1", )  # a barrier from the zombie
    cluster.deliver_all()
    assert cluster.accepted("n1", p) is not None
    assert cluster["n1"].role is Role.FOLLOWER  # refused with epoch 2: it stepped down
    assert cluster["n1"].highest_epoch_seen == Epoch(2)
    cluster.stabilize()
    epochs = {n: epochs_of(cluster, n) for n in cluster.ids}
    assert epochs["n1"] == epochs["n2"] == epochs["n3"] == [1, 2]  # the zombie's entry is gone
    cluster.check_safety()


def test_granted_epoch_not_above_the_promise_is_given_back() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 5)
    cluster.stabilize()
    cluster.grant("n2", 3)  # a ZooKeeper counter reset, say: n2 promised 5 already
    assert cluster["n2"].role is Role.FOLLOWER
    ended = cluster.nodes["n2"].outcomes[-1]
    assert ended.relinquish and "not above" in ended.reason
