"""Time in the replica: timestamps along the log, refused clocks, offsets and the skew policy.

Every node of these clusters reads its own wall clock (`walls`, in ms) before each batch, and
every message carries the sender's hybrid logical clock, as on real nodes.
"""

from itertools import pairwise

from quorapay.core.hlc import Timestamp
from quorapay.core.ready import ClockWarning, LeadershipEnded
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from quorapay.core.types import LogEntry, NodeId
from tests.core.harness import ReplicaCluster, account, transfer

T = 1_800_000_000_000
WIDE = Timing(max_clock_offset_ms=60_000)  # clocks 10 s apart are still within the bound


def cluster(timing: Timing | None = None, **walls: int) -> ReplicaCluster:
    clocks = {"n1": T, "n2": T, "n3": T}
    clocks.update(walls)
    return ReplicaCluster(timing=timing, walls=clocks)


def elect(c: ReplicaCluster, node: str, epoch: int) -> None:
    c.grant(node, epoch)
    c.stabilize()
    assert c[node].serving, node


def pay(c: ReplicaCluster, leader: str, count: int, prefix: str) -> None:
    if "bank" not in c.nodes[NodeId(leader)].ledger.accounts:
        c.propose(leader, account("bank", issuer=True), account("alice"))
    for i in range(count):
        c.propose(leader, transfer(f"{prefix}{i}", "bank", "alice", 1))
    c.stabilize()


def stamps(c: ReplicaCluster, node: str) -> list[Timestamp]:
    log: list[LogEntry] = c.nodes[NodeId(node)].disk.log
    return [e.ts for e in log]


def strictly_increasing(values: list[Timestamp]) -> bool:
    return all(a < b for a, b in pairwise(values))


def warnings(c: ReplicaCluster, node: str) -> list[ClockWarning]:
    return [o for o in c.nodes[NodeId(node)].outcomes if isinstance(o, ClockWarning)]


def test_the_leader_stamps_entries_with_its_clock() -> None:
    c = cluster()
    elect(c, "n1", 1)
    c.walls[NodeId("n1")] = T + 250
    pay(c, "n1", 3, "t")
    ts = stamps(c, "n2")
    assert ts[0] == Timestamp(T, ts[0].logical) and ts[-1].wall_ms == T + 250
    assert strictly_increasing(ts) and stamps(c, "n1") == ts == stamps(c, "n3")


def test_timestamps_increase_across_failover_to_a_clock_10_s_behind_and_one_10_s_ahead(
        ) -> None:
    c = cluster(WIDE, n2=T - 10_000, n3=T + 10_000)
    elect(c, "n1", 1)
    pay(c, "n1", 5, "a")
    elect(c, "n2", 2)  # 10 s behind: it stamps after the log it adopted, not by its clock
    pay(c, "n2", 5, "b")
    assert min(t.wall_ms for t in stamps(c, "n2")) >= T - 10_000 + 10_000  # never its own
    elect(c, "n3", 3)  # 10 s ahead
    pay(c, "n3", 5, "c")
    elect(c, "n1", 4)  # and back: the log is 10 s ahead of n1's clock now
    pay(c, "n1", 5, "d")
    for node in ("n1", "n2", "n3"):
        assert strictly_increasing(stamps(c, node)), node
    assert stamps(c, "n1") == stamps(c, "n2") == stamps(c, "n3")
    assert stamps(c, "n1")[-1].wall_ms == T + 10_000  # n1's clock has not caught up
    c.check_safety()


def test_a_new_leader_stamps_above_the_log_even_after_compaction() -> None:
    c = cluster(WIDE, n2=T - 10_000)
    elect(c, "n1", 1)
    pay(c, "n1", 4, "a")
    for node in ("n1", "n2", "n3"):
        c.compact(node, c[node].applied_index)
    c.crash("n2")
    c.restart("n2")  # its log is empty: only the compaction point's timestamp is left
    assert c["n2"].hlc >= c.nodes[NodeId("n2")].disk.start_ts > Timestamp(T - 10_000, 0)
    elect(c, "n2", 2)
    pay(c, "n2", 2, "b")
    assert strictly_increasing([c.nodes[NodeId("n1")].disk.start_ts, *stamps(c, "n1")])


def test_a_message_from_a_clock_too_far_ahead_is_refused_and_reported_once() -> None:
    c = cluster(n1=T + 2_000)  # beyond the default 500 ms
    c.grant("n1", 1)
    c.stabilize()
    assert c["n1"].role is Role.RECOVERING or c["n1"].role is Role.FOLLOWER
    assert not c["n1"].serving
    assert c["n2"].refused_messages > 1 and c["n2"].refusing_messages_from == ["n1"]
    refusals = [w for w in warnings(c, "n2") if "refusing messages from n1" in w.message]
    assert len(refusals) == 1 and refusals[0].alarm
    assert c["n2"].hlc.wall_ms == T  # not dragged ahead


def test_clocks_within_the_bound_of_their_neighbours_keep_a_majority_working() -> None:
    # n1 and n3 are 900 ms apart, each within 450 ms of n2: no alarm anywhere. n2's HLC runs
    # with n1's clock; n3 does not adopt it, but still follows n2 (whose own clock is close).
    c = cluster(n1=T + 450, n3=T - 450)
    c.stabilize(ticks=12)
    assert not any(c[n].clock_alarm for n in ("n1", "n2", "n3"))
    elect(c, "n2", 1)
    pay(c, "n2", 3, "t")
    assert c["n3"].applied_index == c["n2"].applied_index
    assert c["n3"].unadopted_timestamps > 0 and c["n3"].hlc.wall_ms < T + 450
    c.crash("n1")
    pay(c, "n2", 3, "u")  # n2 and n3 are a majority on their own
    assert c["n3"].applied_index == c["n2"].applied_index
    assert strictly_increasing(stamps(c, "n3"))


def test_a_node_whose_timestamps_ran_ahead_of_its_clock_stands_down_until_time_catches_up(
        ) -> None:
    c = cluster(n1=T + 2_000)
    c.stabilize(ticks=6)  # n1 stamps its messages 2 s ahead
    c.walls[NodeId("n1")] = T  # its clock is put back; its HLC cannot go back
    c.stabilize(ticks=12)
    assert c["n1"].hlc_ahead and not c["n1"].eligible and not c["n1"].clock_alarm
    for node in c.ids:
        c.walls[node] = T + 2_000  # real time catches up
    c.stabilize(ticks=6)
    assert not c["n1"].hlc_ahead and c["n1"].eligible


def test_offsets_are_measured_and_a_node_off_from_a_majority_raises_an_alarm() -> None:
    c = cluster(n1=T + 2_000)
    c.stabilize(ticks=12)
    offsets = c["n1"].clock_offsets()
    assert {p: o.offset_ms for p, o in offsets.items()} == {"n2": -2_000, "n3": -2_000}
    assert c["n2"].clock_offsets()[NodeId("n1")].offset_ms == 2_000
    assert c["n1"].clock_alarm and not c["n2"].clock_alarm and not c["n3"].clock_alarm
    assert any(w.alarm and "clock alarm" in w.message for w in warnings(c, "n1"))


def test_a_skewed_node_refuses_leadership_and_a_healthy_one_takes_it() -> None:
    c = cluster(n1=T + 2_000)
    c.stabilize(ticks=12)
    c.grant("n1", 1)
    ended = [o for o in c.nodes[NodeId("n1")].outcomes if isinstance(o, LeadershipEnded)]
    assert ended and ended[-1].relinquish and "clock" in ended[-1].reason
    assert c["n1"].role is Role.FOLLOWER
    elect(c, "n2", 2)
    pay(c, "n2", 2, "t")


def test_a_leader_whose_clock_jumps_steps_down_and_the_alarm_clears_when_it_is_back() -> None:
    c = cluster()
    elect(c, "n1", 1)
    c.walls[NodeId("n1")] = T + 5_000
    c.stabilize(ticks=12)
    assert c["n1"].role is Role.FOLLOWER and c["n1"].clock_alarm
    ended = [o for o in c.nodes[NodeId("n1")].outcomes if isinstance(o, LeadershipEnded)]
    assert ended[-1].relinquish
    c.walls[NodeId("n1")] = T
    c.stabilize(ticks=12)
    assert not c["n1"].clock_alarm
    assert any(not w.alarm and "cleared" in w.message for w in warnings(c, "n1"))


def test_a_follower_behind_the_bound_falls_behind_and_catches_up_when_its_clock_is_back(
        ) -> None:
    c = cluster(n3=T - 2_000)  # a follower whose clock strobes back
    elect(c, "n1", 1)
    pay(c, "n1", 4, "t")  # n1 and n2 are a majority
    assert c["n3"].applied_index < c["n1"].applied_index
    c.walls[NodeId("n3")] = T
    c.stabilize()
    assert c["n3"].applied_index == c["n1"].applied_index
    assert stamps(c, "n3") == stamps(c, "n1") and strictly_increasing(stamps(c, "n3"))


def test_a_node_whose_timestamps_ran_ahead_gives_a_grant_back() -> None:
    c = cluster(n1=T + 2_000)
    c.stabilize(ticks=6)
    c.walls[NodeId("n1")] = T
    c.stabilize(ticks=12)
    assert c["n1"].hlc_ahead and not c["n1"].clock_alarm
    c.grant("n1", 1)
    ended = [o for o in c.nodes[NodeId("n1")].outcomes if isinstance(o, LeadershipEnded)]
    assert ended and ended[-1].relinquish and "ahead" in ended[-1].reason
    assert not c["n1"].serving


def test_the_future_stamped_tail_of_a_leader_whose_clock_jumped_is_dropped_not_committed(
        ) -> None:
    c = cluster()
    elect(c, "n1", 1)
    pay(c, "n1", 2, "before")
    c.walls[NodeId("n1")] = T + 2_000  # its clock jumps; what it appends now is refused
    for i in range(3):
        c.propose("n1", transfer(f"future{i}", "bank", "alice", 1))
    c.stabilize(ticks=12)
    assert c["n1"].role is Role.FOLLOWER  # the alarm made it step down
    assert c["n1"].last_index > c["n2"].last_index  # it still holds the future tail
    c.walls[NodeId("n1")] = T  # its clock is back before the next leader takes over
    elect(c, "n2", 2)
    pay(c, "n2", 2, "after")
    assert all(ts.wall_ms <= T + 500 for ts in stamps(c, "n2"))
    assert not any(c[n].hlc_ahead for n in ("n2", "n3"))
    assert stamps(c, "n1") == stamps(c, "n2")  # n1's tail was cut, never committed
    ledger = c.nodes[NodeId("n2")].ledger
    assert not any(t.startswith("future") for t in ledger.transfers)
    c.check_safety()
