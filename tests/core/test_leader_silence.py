"""Leader silence: followers that hear nothing from their leader ask each other, and a majority
agreeing (LeaderSilent) deposes it in ZooKeeper at once -- no waiting for its session to
expire. A leader that reaches a majority is never reported, and a deposed leader that wakes up
is fenced by the new epoch's promises as before."""

from __future__ import annotations

from quorapay.core import znodes
from quorapay.core.coordinator import CoordinationNotice, DeposeRequested
from quorapay.core.ready import LeaderSilent
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from quorapay.core.types import Epoch, NodeId
from tests.core import harness
from tests.core.harness import ReplicaCluster, account
from tests.core.test_coordinator import started

SILENCE = 10  # ticks
LEADER = "/quorapay/t/leader"


def led_by_n1(*ids: str) -> ReplicaCluster:
    return harness.led_by_n1(Timing(silence_ticks=SILENCE), ids or ("n1", "n2", "n3"))


def silent_reports(cluster: ReplicaCluster, node: str) -> list[LeaderSilent]:
    return [o for o in cluster.nodes[NodeId(node)].outcomes if isinstance(o, LeaderSilent)]


def run(cluster: ReplicaCluster, ticks: int, only: tuple[str, ...] | None = None) -> None:
    for _ in range(ticks):
        cluster.tick(only=only)
        cluster.deliver_all()


def test_a_crashed_leader_is_reported_silent_by_a_majority_of_followers() -> None:
    cluster = led_by_n1()
    cluster.crash("n1")
    run(cluster, SILENCE - 1)
    assert silent_reports(cluster, "n2") == silent_reports(cluster, "n3") == []
    run(cluster, 2)
    reports = silent_reports(cluster, "n2") + silent_reports(cluster, "n3")
    assert reports and all(r.epoch == 1 and r.leader == "n1" for r in reports)
    assert {r.agreeing for r in reports} <= {("n2", "n3"), ("n3", "n2")}


def test_a_leader_that_reaches_a_majority_is_never_reported() -> None:
    cluster = led_by_n1()
    cluster.cut("n1", "n3")  # n3 hears nothing; n2 still does, and n1 commits with it
    run(cluster, 5 * SILENCE)
    assert cluster.accepted("n1", cluster.propose("n1", account("a"))) is not None
    run(cluster, 5 * SILENCE)
    assert silent_reports(cluster, "n3") == silent_reports(cluster, "n2") == []
    assert cluster["n1"].role is Role.LEADER


def test_an_isolated_follower_alone_reports_nothing() -> None:
    cluster = led_by_n1()
    cluster.isolate("n3")
    run(cluster, 5 * SILENCE)
    assert silent_reports(cluster, "n3") == []


def test_five_nodes_need_three_that_heard_nothing() -> None:
    cluster = led_by_n1("n1", "n2", "n3", "n4", "n5")
    cluster.cut("n1", "n4")
    cluster.cut("n1", "n5")  # n1 still commits with n2 and n3
    run(cluster, 3 * SILENCE)
    assert all(silent_reports(cluster, n) == [] for n in ("n2", "n3", "n4", "n5"))
    cluster.cut("n1", "n3")  # now only n2 hears n1: n1 cannot commit
    run(cluster, 2 * SILENCE)
    reports = silent_reports(cluster, "n3") + silent_reports(cluster, "n4") \
        + silent_reports(cluster, "n5")
    assert reports and all(len(r.agreeing) == 3 and "n2" not in r.agreeing for r in reports)


def test_silence_off_reports_nothing() -> None:
    cluster = ReplicaCluster(timing=Timing())
    cluster.grant("n1", 1)
    cluster.stabilize()
    cluster.crash("n1")
    run(cluster, 100)
    assert silent_reports(cluster, "n2") == silent_reports(cluster, "n3") == []


def test_a_deposed_leader_that_wakes_up_is_fenced_by_the_new_epoch() -> None:
    cluster = led_by_n1()
    cluster.isolate("n1")  # paused, as far as the others can tell
    run(cluster, SILENCE + 2, only=("n2", "n3"))
    assert silent_reports(cluster, "n2") or silent_reports(cluster, "n3")
    cluster.grant("n2", 2)  # ZooKeeper's next candidate, after the deposition
    run(cluster, 5, only=("n2", "n3"))
    assert cluster["n2"].serving
    cluster.heal()  # n1 wakes up still leading epoch 1
    accepted = cluster.accepted("n1", cluster.propose("n1", account("stale")))
    assert accepted is not None and accepted.epoch == 1
    cluster.stabilize()
    assert cluster["n1"].role is Role.FOLLOWER and cluster["n1"].promised_epoch == 2
    for log in cluster.logs().values():  # the stale entry is nowhere: never committed
        assert (accepted.index, 1) not in log
    cluster.check_safety()


def test_coordination_deposes_only_the_leader_and_epoch_reported() -> None:
    world = started("n1", "n2", "n3")
    world.feed("n2", DeposeRequested(epoch=Epoch(7), node=NodeId("n1")))  # not its epoch
    world.feed("n3", DeposeRequested(epoch=Epoch(1), node=NodeId("n2")))  # not the leader
    world.run()
    assert world.zk.data(LEADER) and len(world.candidates()) == 3
    world.feed("n3", DeposeRequested(epoch=Epoch(1), node=NodeId("n1"),
                                     agreeing=(NodeId("n3"), NodeId("n2"))))
    world.run()
    leader = znodes.parse_leader(world.zk.data(LEADER))
    assert leader is not None and (leader.node, leader.epoch) == ("n2", 2)  # next in line
    assert not any(c.startswith("n1__") for c in world.candidates())
    assert any(isinstance(i, CoordinationNotice) for i in world.inputs["n3"])  # type: ignore
    # n1's session lives on (a paused leader): its coordinator still thinks it holds epoch 1
    # until its replica, refused by the new epoch, relinquishes it; then it stands again
    world.relinquish("n1", 1)
    world.run()
    assert znodes.parse_leader(world.zk.data(LEADER)).node == "n2"  # type: ignore[union-attr]
    assert any(c.startswith("n1__") for c in world.candidates())
