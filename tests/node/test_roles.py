"""Every role change of a node is one log line with its cause and durations in seconds:
real replicas (the core test harness) through an election, a failover and a step-down."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from quorapay.core.inputs import LeadershipGranted
from quorapay.core.ready import LeadershipEnded
from quorapay.core.types import Epoch, NodeId
from quorapay.node.roles import RoleLog
from tests.core.harness import ReplicaCluster

TICK = 0.05


class World:
    """Replicas, a fake monotonic clock that moves a tick per tick, and a RoleLog per node."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cluster = ReplicaCluster()
        self.roles = {n: RoleLog(tick_seconds=TICK, now=lambda: self.now)
                      for n in self.cluster.ids}
        self.seen_outcomes = {n: 0 for n in self.cluster.ids}

    def observe(self) -> None:
        for node_id, roles in self.roles.items():
            node = self.cluster.nodes[node_id]
            for outcome in node.outcomes[self.seen_outcomes[node_id]:]:
                if isinstance(outcome, LeadershipEnded):
                    roles.ended(outcome)
            self.seen_outcomes[node_id] = len(node.outcomes)
            if node.up:
                roles.observe(node.replica)

    def grant(self, node: str, epoch: int, cause: str) -> None:
        grant = LeadershipGranted(epoch=Epoch(epoch), cause=cause)
        self.roles[node].granted(grant)  # as the driver does, before stepping it
        self.cluster.step(node, grant)
        self.observe()

    def run(self, ticks: int, only: tuple[str, ...] | None = None) -> None:
        for _ in range(ticks):
            self.now += TICK
            self.cluster.tick(1, only)
            self.cluster.deliver_all()
            self.observe()


def role_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [(r.getMessage(), r.fields) for r in caplog.records  # type: ignore[attr-defined]
            if getattr(r, "fields", {}).get("event") == "role"]


@pytest.fixture(autouse=True)
def info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quorapay.node.roles")


def test_an_election_logs_candidate_leader_and_followers_with_seconds(
        caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.observe()
    world.grant("n1", 1, "first in ZooKeeper's election queue, with no leader znode")
    world.run(4)
    lines = role_lines(caplog)
    assert lines[0] == ("candidate for epoch 1: first in ZooKeeper's election queue, with no "
                        "leader znode; collecting promises from a majority",
                        {"event": "role", "role": "candidate", "epoch": 1,
                         "cause": "first in ZooKeeper's election queue, with no leader znode"})
    leader = [f for m, f in lines if f["role"] == "leader"]
    assert len(leader) == 1 and leader[0]["epoch"] == 1
    assert 0 < leader[0]["takeover_seconds"] <= 4 * TICK
    following = {f["leader"] for m, f in lines if f["role"] == "follower"}
    assert following == {"n1"} and sum(f["role"] == "follower" for _, f in lines) == 2
    world.run(20)
    assert len(role_lines(caplog)) == len(lines)  # nothing changed: nothing more said


def test_a_failover_logs_how_long_the_cluster_was_without_a_leader(
        caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.grant("n1", 1, "first")
    world.run(4)
    world.cluster.crash("n1")
    world.run(60, only=("n2", "n3"))  # 3 s without n1
    world.grant("n2", 2, "first")
    world.run(4, only=("n2", "n3"))
    leader = [(m, f) for m, f in role_lines(caplog) if f["role"] == "leader" and f["epoch"] == 2]
    [(message, fields)] = leader
    assert 3.0 <= fields["leaderless_seconds"] <= 3.0 + 5 * TICK
    assert fields["takeover_seconds"] <= 4 * TICK
    assert message.startswith("leader of epoch 2, serving: took over ")
    [(_, follow)] = [(m, f) for m, f in role_lines(caplog)
                     if f["role"] == "follower" and f["epoch"] == 2]
    assert follow["leader"] == "n2" and follow["leaderless_seconds"] >= 3.0


def test_a_leader_that_loses_its_majority_says_why_and_for_how_long_it_led(
        caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.grant("n1", 1, "first")
    world.run(10)
    world.cluster.isolate("n1")
    world.run(world.cluster.timing.election_timeout_ticks + 5)
    [(message, fields)] = [(m, f) for m, f in role_lines(caplog) if "ended" in m]
    assert fields["cause"] == "no reply from a majority within the election timeout"
    assert "ticks" not in message
    assert fields["led_seconds"] == pytest.approx(
        (10 + world.cluster.timing.election_timeout_ticks) * TICK, abs=5 * TICK)
    ended = [r for r in caplog.records if "ended" in r.getMessage()]
    assert ended[0].levelno == logging.WARNING


def test_a_switchover_ending_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.grant("n1", 1, "first")
    world.run(4)
    world.now += 2.0
    world.roles["n1"].ended(LeadershipEnded(epoch=Epoch(1), reason="handed over to n2 "
                                            "(switchover)", relinquish=True,
                                            handover_to=NodeId("n2")))
    [record] = [r for r in caplog.records if "ended" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert 2.0 < record.fields["led_seconds"] <= 2.0 + 4 * TICK  # type: ignore[attr-defined]


def test_a_grant_the_core_declines_is_not_a_leadership_that_ended(
        caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.grant("n1", 2, "first")
    world.run(4)
    world.grant("n2", 2, "first")  # a stale grant: n2 promised epoch 2 to n1
    world.observe()
    [(message, fields)] = [(m, f) for m, f in role_lines(caplog) if "n2" not in f.get(
        "leader", "") and "declined" in m]
    assert message.startswith("declined the leadership of epoch 2 that ZooKeeper granted: ")
    assert "led_seconds" not in fields
    assert not [m for m, _ in role_lines(caplog) if "ended" in m]
