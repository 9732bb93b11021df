"""A planned leader change: the leader hands over to a caught-up node, and no client request
fails or is left with an unknown outcome (they are told to retry, and their retries succeed).

The leader stops taking new requests (UNAVAILABLE, retryable), answers every request it had
taken, waits until the target holds its whole log, tells the target to take over and gives up
its ZooKeeper leadership naming the target; the target claims the next epoch ahead of its turn
(docs/02-coordination). This module asks for it and times it from outside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from quorapay.api import schema as api
from quorapay.client import ClientError
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.security.access import ask_node


class SwitchoverError(QuorapayError):
    """The switchover could not be done, or did not end as asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverReport:
    old_leader: str
    target: str  # the node asked for, or the one the leader chose
    new_leader: str
    old_epoch: int
    new_epoch: int
    caught_up_seconds: float  # the old leader took no new request while the target caught up
    seconds: float  # from the request until the new leader served: the longest a write waited


async def switchover(cluster: ClusterConfig, to: str | None = None, *,
                     timeout: float = 30.0) -> SwitchoverReport:
    """Hand leadership from the serving leader to `to` (None: the leader's choice, the most
    caught-up follower) and wait until a new leader serves; all within `timeout`. A leader
    being elected is waited for; `to` leading already is a switchover done in no time."""
    deadline = time.monotonic() + timeout
    found, leader = await _serving(cluster, deadline)
    if leader is None:
        raise SwitchoverError(f"no leader has served for {timeout:g}s: nothing to hand over "
                              "(see `quorapay status`)")
    if to == leader.node:  # what was asked for holds already
        return SwitchoverReport(old_leader=leader.node, target=to, new_leader=leader.node,
                                old_epoch=leader.epoch, new_epoch=leader.epoch,
                                caught_up_seconds=0.0, seconds=0.0)
    if to is not None and not isinstance(found.get(to), api.NodeStatus):
        raise SwitchoverError(f"{to} does not answer ({found.get(to)}): it cannot take over")
    started = time.monotonic()
    answer = await _ask_leader(cluster, leader, to)
    info = answer.switchover
    assert info is not None
    new = await _new_leader(cluster, above=leader.epoch, deadline=deadline)
    if new is None:
        raise SwitchoverError(f"{leader.node} handed over to {info.to}, but no new leader "
                              f"served within {timeout:g}s (see `quorapay status`)")
    return SwitchoverReport(old_leader=leader.node, target=info.to, new_leader=new.node,
                            old_epoch=leader.epoch, new_epoch=new.epoch,
                            caught_up_seconds=info.caught_up_ms / 1000,
                            seconds=round(time.monotonic() - started, 3))


async def _ask_leader(cluster: ClusterConfig, leader: api.NodeStatus, to: str | None
                      ) -> api.Response:
    try:
        return await ask_node(cluster, cluster.node(leader.node), api.Switchover(to=to),
                              timeout=cluster.timing.request_timeout + 2)
    except ClientError as exc:
        raise SwitchoverError(f"{leader.node} did not hand over: {exc}") from None


async def _serving(cluster: ClusterConfig, deadline: float
                   ) -> tuple[dict[str, api.NodeStatus | str], api.NodeStatus | None]:
    while True:
        found = await supervisor.statuses(cluster, timeout=1.0)
        leader = supervisor.current_leader(found)
        if leader is not None or time.monotonic() >= deadline:
            return found, leader
        await trio.sleep(0.1)


async def _new_leader(cluster: ClusterConfig, *, above: int, deadline: float
                      ) -> api.NodeStatus | None:
    while time.monotonic() < deadline:
        found = supervisor.current_leader(await supervisor.statuses(cluster, timeout=1.0))
        if found is not None and found.epoch > above:
            return found
        await trio.sleep(0.02)
    return None
