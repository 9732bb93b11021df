"""Is the cluster healthy? Each node's state, and the cluster's, from the nodes' statuses.

A node is, in this order of precedence:

| state | when |
|---|---|
| down | it does not answer |
| suspended | its ZooKeeper session is not connected (it takes no writes if it leads) |
| clock alarm | its clock is off from a majority by more than the maximum offset |
| isolated | a follower that has not heard from its leader for the election timeout, or |
|          | knows none; a leader that has not heard from a majority for that long |
| lagging | more than LAG_SECONDS of committed log behind the leader (or LAG_ENTRIES entries) |
| ok | none of the above |

The cluster is *healthy* when a leader serves and a majority of the nodes are ok; *degraded*
when a leader serves with a majority ok but some node is not; *no majority* when a leader serves
but fewer than a majority are ok (it cannot last); *no leader* when none serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from quorapay.api import schema as api

LAG_SECONDS = 1.0
LAG_ENTRIES = 10_000


class NodeState(StrEnum):
    OK = "ok"
    LAGGING = "lagging"
    ISOLATED = "isolated"
    CLOCK_ALARM = "clock alarm"
    SUSPENDED = "suspended"
    DOWN = "down"


class ClusterState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NO_MAJORITY = "no majority"
    NO_LEADER = "no leader"

    @property
    def exit_code(self) -> int:
        """What `quorapay status` exits with: 0 while a leader serves with a healthy majority."""
        return {ClusterState.HEALTHY: 0, ClusterState.DEGRADED: 0, ClusterState.NO_LEADER: 2,
                ClusterState.NO_MAJORITY: 3}[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHealth:
    node: str
    state: NodeState
    lag_entries: int | None  # behind the leader's commit index (None: unknown)
    lag_seconds: float | None  # of committed log: the leader's commit time minus its applied
    contact_seconds: float | None  # since it last heard from its leader (a follower)


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    state: ClusterState
    leader: str | None
    epoch: int | None
    nodes: dict[str, NodeHealth]

    @property
    def ok(self) -> int:
        return sum(1 for n in self.nodes.values() if n.state is NodeState.OK)

    def summary(self) -> str:
        total = len(self.nodes)
        others = ", ".join(f"{n.node} {n.state.value}" for n in self.nodes.values()
                           if n.state is not NodeState.OK)
        tail = f" ({others})" if others else ""
        if self.leader is None:
            return f"NO LEADER: no node serves; {self.ok} of {total} nodes ok{tail}"
        leads = f"{self.leader} leads epoch {self.epoch}"
        word = {ClusterState.HEALTHY: "healthy", ClusterState.DEGRADED: "DEGRADED",
                ClusterState.NO_MAJORITY: "NO MAJORITY"}[self.state]
        return f"{word}: {leads}; {self.ok} of {total} nodes ok{tail}"


def assess(found: dict[str, api.NodeStatus | str], *, election_timeout: float) -> Health:
    """The health of every node and of the cluster, from `supervisor.statuses`."""
    answered = {n: s for n, s in found.items() if isinstance(s, api.NodeStatus)}
    serving = [s for s in answered.values() if s.serving]
    leader = max(serving, key=lambda s: s.epoch) if serving else None
    nodes = {n: _node(n, found[n], leader, election_timeout) for n in found}
    healthy = sum(1 for h in nodes.values() if h.state is NodeState.OK)
    majority = len(found) // 2 + 1
    if leader is None:
        state = ClusterState.NO_LEADER
    elif healthy < majority:
        state = ClusterState.NO_MAJORITY
    elif healthy < len(found):
        state = ClusterState.DEGRADED
    else:
        state = ClusterState.HEALTHY
    return Health(state=state, leader=leader.node if leader else None,
                  epoch=leader.epoch if leader else None, nodes=nodes)


def _node(node: str, status: api.NodeStatus | str, leader: api.NodeStatus | None,
          election_timeout: float) -> NodeHealth:
    if not isinstance(status, api.NodeStatus):
        return NodeHealth(node=node, state=NodeState.DOWN, lag_entries=None, lag_seconds=None,
                          contact_seconds=None)
    lag_entries = lag_seconds = None
    if leader is not None:
        lag_entries = max(0, leader.commit_index - status.applied_index)
        if leader.commit_wall_ms and status.applied_wall_ms:
            lag_seconds = max(0.0, (leader.commit_wall_ms - status.applied_wall_ms) / 1000)
    contact = None if status.leader_contact_ms is None else status.leader_contact_ms / 1000
    return NodeHealth(node=node, state=_state(status, lag_entries, lag_seconds, contact,
                                              election_timeout),
                      lag_entries=lag_entries, lag_seconds=lag_seconds, contact_seconds=contact)


def _state(status: api.NodeStatus, lag_entries: int | None, lag_seconds: float | None,
           contact: float | None, election_timeout: float) -> NodeState:
    if status.zookeeper != "CONNECTED":
        return NodeState.SUSPENDED
    if status.clock is not None and status.clock.alarm:
        return NodeState.CLOCK_ALARM
    if status.role == "leader":
        if status.majority_contact_ms is not None and \
                status.majority_contact_ms / 1000 > election_timeout:
            return NodeState.ISOLATED
    elif contact is None or contact > election_timeout:
        return NodeState.ISOLATED
    if (lag_seconds is not None and lag_seconds > LAG_SECONDS) or (
            lag_entries is not None and lag_entries > LAG_ENTRIES):
        return NodeState.LAGGING
    return NodeState.OK
