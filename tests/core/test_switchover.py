"""Switchover: the leader stops taking requests, answers those it took, waits until its target
holds every entry, then hands over; in ZooKeeper the target claims ahead of its turn and the
head of the queue lets it. Claiming out of turn stays safe: the epoch counter decides."""

from __future__ import annotations

import pytest

from quorapay.core import znodes
from quorapay.core.coordinator import ClaimRequested, Create, Delete, RelinquishRequested, RetryDue
from quorapay.core.inputs import SwitchoverRequested
from quorapay.core.messages import TakeOver
from quorapay.core.ready import LeadershipEnded, SwitchoverAnswered, TakeOverAsked, Unavailable
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from quorapay.core.types import Epoch, NodeId
from tests.core import harness
from tests.core.harness import InFlight, ReplicaCluster, account
from tests.core.test_coordinator import started

HANDOVER = "/quorapay/t/handover"


def led_by_n1() -> ReplicaCluster:
    return harness.led_by_n1(Timing(handover_ticks=30))


def answers(cluster: ReplicaCluster, node: str) -> list[SwitchoverAnswered]:
    return [o for o in cluster.nodes[NodeId(node)].outcomes if isinstance(o, SwitchoverAnswered)]


def test_the_leader_hands_over_once_its_target_holds_every_entry() -> None:
    cluster = led_by_n1()
    cluster.cut("n1", "n3")  # n3 falls behind
    proposal = cluster.propose("n1", account("a"))
    cluster.stabilize(ticks=2)
    cluster.step("n1", SwitchoverRequested(request=7, to=NodeId("n3")))
    refused = cluster.propose("n1", account("b"))  # new requests: retry later
    assert not cluster.accepted("n1", refused)
    assert cluster["n1"].role is Role.LEADER and answers(cluster, "n1") == []
    cluster.heal()
    cluster.stabilize(ticks=6)
    done = answers(cluster, "n1")
    assert [(a.request, a.to, a.epoch) for a in done] == [(7, "n3", 1)]
    assert cluster["n1"].role is Role.FOLLOWER
    ended = [o for o in cluster.nodes[NodeId("n1")].outcomes if isinstance(o, LeadershipEnded)]
    assert ended[-1].relinquish and ended[-1].handover_to == "n3"
    assert cluster.nodes[NodeId("n3")].disk.log[-1].index == cluster["n1"].last_index
    assert TakeOverAsked(epoch=Epoch(1)) in cluster.nodes[NodeId("n3")].outcomes
    assert cluster.accepted("n1", proposal) is not None  # answered before the handover
    cluster.grant("n3", 2)
    cluster.stabilize()
    assert cluster["n3"].serving
    cluster.check_safety()


def test_without_a_target_the_most_caught_up_follower_is_chosen() -> None:
    cluster = led_by_n1()
    cluster.cut("n1", "n2")
    cluster.propose("n1", account("a"))
    cluster.stabilize(ticks=2)
    cluster.heal()
    cluster.step("n1", SwitchoverRequested(request=1, to=None))
    cluster.stabilize(ticks=6)
    assert answers(cluster, "n1")[0].to == "n3"


def test_a_target_that_never_catches_up_gives_up_and_the_leader_leads_on() -> None:
    cluster = led_by_n1()
    cluster.cut("n1", "n3")
    cluster.propose("n1", account("a"))
    cluster.step("n1", SwitchoverRequested(request=2, to=NodeId("n3")))
    cluster.stabilize(ticks=35)
    gave_up = answers(cluster, "n1")
    assert len(gave_up) == 1 and gave_up[0].to is None and "did not catch up" in gave_up[0].gave_up
    assert cluster["n1"].serving
    later = cluster.propose("n1", account("b"))
    assert cluster.accepted("n1", later) is not None


def test_bad_targets_and_non_leaders_are_refused() -> None:
    cluster = led_by_n1()
    cluster.step("n1", SwitchoverRequested(request=1, to=NodeId("n1")))
    cluster.step("n2", SwitchoverRequested(request=2, to=NodeId("n3")))
    assert answers(cluster, "n1")[0].invalid == "n1 already leads"
    assert answers(cluster, "n2")[0].refusal is Unavailable.NOT_LEADER
    cluster.cut("n1", "n2")
    cluster.propose("n1", account("a"))
    cluster.step("n1", SwitchoverRequested(request=3, to=NodeId("n2")))  # n2 lags: waits
    cluster.step("n1", SwitchoverRequested(request=4, to=NodeId("n3")))  # one at a time
    assert answers(cluster, "n1")[-1].refusal is Unavailable.HANDING_OVER


def test_a_take_over_from_anyone_but_the_followed_leader_is_ignored() -> None:
    cluster = led_by_n1()
    for sender, epoch in (("n2", 1), ("n1", 0)):  # not its leader; a stale epoch
        cluster.network.append(InFlight(src=NodeId(sender), dst=NodeId("n3"),
                                        message=TakeOver(epoch=Epoch(epoch))))
    cluster.deliver_all()
    assert not any(isinstance(o, TakeOverAsked) for o in cluster.nodes[NodeId("n3")].outcomes)


def test_the_target_claims_ahead_of_the_queue_and_the_head_waits_for_it() -> None:
    world = started("n1", "n2", "n3")
    world.feed("n3", ClaimRequested(epoch=Epoch(1)))  # n1 told n3 to take over ...
    world.feed("n1", RelinquishRequested(epoch=Epoch(1), handover_to=NodeId("n3")))
    world.run()
    assert world.grants("n3") == [2] and world.grants("n2") == []
    assert world.zk.data(HANDOVER) is None  # the target removed it once granted
    world.feed("n3", RelinquishRequested(epoch=Epoch(2)))
    world.run()
    assert world.grants("n2") == [3]  # an ordinary relinquish: the queue decides again


def test_the_head_of_the_queue_waits_for_the_target_only_so_long() -> None:
    world = started("n1", "n2", "n3")
    world.feed("n1", RelinquishRequested(epoch=Epoch(1), handover_to=NodeId("n3")))
    world.run()  # n3 was never told (its TakeOver was lost)
    assert world.grants("n2") == [] and world.grants("n3") == []
    record = znodes.parse_handover(world.zk.data(HANDOVER) or b"")
    assert record is not None and (record.to, record.epoch) == ("n3", 1)
    for _ in range(5):
        world.feed("n2", RetryDue())
        world.run()
    assert world.grants("n2") == [2]
    assert world.zk.data(HANDOVER) is None


def test_a_target_beaten_to_it_goes_back_to_the_queue() -> None:
    world = started("n1", "n2", "n3")
    world.feed("n1", RelinquishRequested(epoch=Epoch(1), handover_to=NodeId("n3")))
    world.run()
    for _ in range(5):
        world.feed("n2", RetryDue())
        world.run()
    assert world.grants("n2") == [2]
    world.feed("n3", ClaimRequested(epoch=Epoch(1)))  # too late: n2 leads epoch 2
    world.run()
    assert world.grants("n3") == []
    world.feed("n2", RelinquishRequested(epoch=Epoch(2)))
    world.run()
    assert world.grants("n3") == [3]  # still in the queue, after n2


@pytest.mark.parametrize("lost_at", [Create, Delete])
def test_a_target_leading_out_of_queue_order_that_loses_its_connection_still_lets_go(
        lost_at: type) -> None:
    """Found by the simulator (seed 860): n3 took over out of queue order (n2 is ahead of it),
    then handed over in turn and lost its ZooKeeper connection mid-way. Its election fiber
    started over and queued behind n2 -- keeping its leader znode, which n2 waited for: no
    leader ever again. Now a run first finishes a leadership of its own leader znode."""
    world = started("n1", "n2", "n3")
    world.feed("n3", ClaimRequested(epoch=Epoch(1)))
    world.feed("n1", RelinquishRequested(epoch=Epoch(1), handover_to=NodeId("n3")))
    world.run()
    assert world.grants("n3") == [2]
    world.feed("n3", RelinquishRequested(epoch=Epoch(2), handover_to=NodeId("n1")))
    world.run_until("n3", lost_at)
    world.run(lose_replies_of="n3")  # the handover or the delete lands; n3 hears a loss
    world.reconnect("n3")
    world.run()
    world.feed("n1", ClaimRequested(epoch=Epoch(2)))  # (the TakeOver n1 was sent)
    world.run()
    for _ in range(5):  # whoever is to lead, leads
        world.feed("n2", RetryDue())
        world.run()
    assert world.grants("n1")[1:] + world.grants("n2") == [3]
    assert world.grants("n3") == [2]  # and n3 was not granted its old epoch again
