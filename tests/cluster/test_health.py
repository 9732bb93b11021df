"""`quorapay status`'s verdict: each node's state and the cluster's, from what the nodes say."""

from __future__ import annotations

from typing import Any

from quorapay.api import schema as api
from quorapay.cluster.health import ClusterState, NodeState, assess

TIMEOUT = 1.0  # the election timeout, in seconds


def leader(**changes: Any) -> api.NodeStatus:
    fields: dict[str, Any] = dict(node="n1", role="leader", serving=True, epoch=4, leader="n1",
                                  last_index=100, commit_index=100, applied_index=100,
                                  log_start=0, zookeeper="CONNECTED", zookeeper_leader="n1",
                                  commit_wall_ms=50_000, applied_wall_ms=50_000,
                                  majority_contact_ms=40)
    return api.NodeStatus(**(fields | changes))


def follower(node: str, **changes: Any) -> api.NodeStatus:
    fields: dict[str, Any] = dict(node=node, role="follower", serving=False, leader="n1",
                                  majority_contact_ms=None, leader_contact_ms=30)
    return leader(**(fields | changes))


def cluster(**nodes: api.NodeStatus | str) -> dict[str, api.NodeStatus | str]:
    return {"n1": leader(), "n2": follower("n2"), "n3": follower("n3")} | nodes


def test_a_leader_with_every_node_in_step_is_healthy() -> None:
    health = assess(cluster(), election_timeout=TIMEOUT)
    assert health.state is ClusterState.HEALTHY and health.state.exit_code == 0
    assert (health.leader, health.epoch, health.ok) == ("n1", 4, 3)
    assert health.summary() == "healthy: n1 leads epoch 4; 3 of 3 nodes ok"


def test_a_node_down_leaves_the_cluster_degraded_but_serving() -> None:
    health = assess(cluster(n3="no answer at 127.0.0.1:7003"), election_timeout=TIMEOUT)
    assert health.nodes["n3"].state is NodeState.DOWN
    assert health.state is ClusterState.DEGRADED and health.state.exit_code == 0
    assert health.summary() == "DEGRADED: n1 leads epoch 4; 2 of 3 nodes ok (n3 down)"


def test_a_follower_behind_by_more_than_a_second_of_log_is_lagging() -> None:
    slow = follower("n2", applied_index=90, applied_wall_ms=48_500)
    health = assess(cluster(n2=slow), election_timeout=TIMEOUT)
    assert health.nodes["n2"].state is NodeState.LAGGING
    assert health.nodes["n2"].lag_entries == 10 and health.nodes["n2"].lag_seconds == 1.5
    close = follower("n2", applied_index=90, applied_wall_ms=49_900)
    assert assess(cluster(n2=close), election_timeout=TIMEOUT).nodes["n2"].state is NodeState.OK


def test_a_follower_that_has_not_heard_its_leader_for_an_election_timeout_is_isolated() -> None:
    for quiet in (follower("n2", leader_contact_ms=1_500), follower("n2", leader=None,
                                                                     leader_contact_ms=None)):
        health = assess(cluster(n2=quiet), election_timeout=TIMEOUT)
        assert health.nodes["n2"].state is NodeState.ISOLATED, quiet
        assert health.state is ClusterState.DEGRADED


def test_a_leader_cut_off_from_its_majority_has_no_majority() -> None:
    alone = leader(majority_contact_ms=3_000)
    health = assess(cluster(n1=alone, n2="no answer", n3="no answer"), election_timeout=TIMEOUT)
    assert health.nodes["n1"].state is NodeState.ISOLATED
    assert health.state is ClusterState.NO_MAJORITY and health.state.exit_code == 3
    assert health.summary().startswith("NO MAJORITY: n1 leads epoch 4; 0 of 3 nodes ok")


def test_no_serving_node_means_no_leader() -> None:
    health = assess(cluster(n1=leader(serving=False, role="recovering")),
                    election_timeout=TIMEOUT)
    assert health.state is ClusterState.NO_LEADER and health.state.exit_code == 2
    assert health.leader is None and health.nodes["n2"].lag_entries is None


def test_zookeeper_and_clock_trouble_outrank_lag() -> None:
    suspended = follower("n2", zookeeper="SUSPENDED", applied_index=0, applied_wall_ms=1)
    assert assess(cluster(n2=suspended),
                  election_timeout=TIMEOUT).nodes["n2"].state is NodeState.SUSPENDED
    clock = api.ClockStatus(wall="2026-11-29T00:00:00Z", injected_offset_ms=2_000, fault="",
                            hlc="2026-11-29T00:00:00Z", hlc_logical=0, max_offset_ms=500,
                            alarm=True, hlc_ahead=False, peers={}, refusing=[], refused=0,
                            unadopted=0)
    skewed = follower("n3", clock=clock)
    assert assess(cluster(n3=skewed),
                  election_timeout=TIMEOUT).nodes["n3"].state is NodeState.CLOCK_ALARM


def test_the_leader_is_the_serving_node_of_the_highest_epoch() -> None:
    stale = leader(node="n3", epoch=3, leader="n3")
    health = assess(cluster(n3=stale), election_timeout=TIMEOUT)
    assert health.leader == "n1" and health.epoch == 4
