"""One log line for every role change of a node, with its cause and how long it took, in seconds.

The core decides roles; this only watches them change (after every batch of work) and times
the changes with the driver's monotonic clock. Lines carry `fields` for machines: `event`
("role"), `role`, `epoch`, and where they apply `leader`, `cause`, `takeover_seconds` (from
ZooKeeper's grant to serving), `leaderless_seconds` (since this node last heard from a leader)
and `led_seconds`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quorapay.core.inputs import LeadershipGranted
from quorapay.core.ready import LeadershipEnded
from quorapay.core.replica import Replica, Role
from quorapay.core.types import Epoch, NodeId


@dataclass(frozen=True, slots=True)
class RoleView:
    """What a role change is: a different role, epoch, leader followed, or serving or not."""

    role: Role
    epoch: Epoch
    leader: NodeId | None
    serving: bool

    @classmethod
    def of(cls, replica: Replica) -> RoleView:
        return cls(replica.role, replica.promised_epoch, replica.leader, replica.serving)


log = logging.getLogger(__name__)


class RoleLog:
    def __init__(self, *, tick_seconds: float, logger: logging.Logger = log,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._tick = tick_seconds
        self._now = now
        self._view: RoleView | None = None
        self._heard_leader = now()  # when this node last heard from a leader (or started)
        self._grants: dict[Epoch, tuple[LeadershipGranted, float]] = {}  # not yet taken up
        self._led: Epoch | None = None  # the epoch this node is candidate or leader of
        self._led_since = 0.0  # its grant
        self._serving: Epoch | None = None  # the epoch it has served in, since when
        self._serving_since = 0.0
        self._stopped_serving_at = 0.0

    def granted(self, grant: LeadershipGranted) -> None:
        """ZooKeeper granted an epoch (before the core steps it): remember why, and when."""
        self._grants = {e: g for e, g in self._grants.items() if e > grant.epoch - 8}
        self._grants[grant.epoch] = (grant, self._now())

    def ended(self, ended: LeadershipEnded) -> None:
        now = self._now()
        if ended.epoch != self._led:  # granted, but the core would not take it up
            self._grants.pop(ended.epoch, None)
            self._line(logging.INFO, f"declined the leadership of epoch {ended.epoch} that "
                       f"ZooKeeper granted: {ended.reason}", role="follower",
                       epoch=ended.epoch, cause=ended.reason)
            return
        since = self._serving_since if self._serving == ended.epoch else self._led_since
        led = round(now - since, 3)
        planned = ended.handover_to is not None
        self._line(logging.INFO if planned else logging.WARNING,
                   f"leadership of epoch {ended.epoch} ended after {led:g} s: {ended.reason}",
                   role="follower", epoch=ended.epoch, cause=ended.reason, led_seconds=led)
        self._heard_leader = now  # this node was the leader until now
        self._led = self._serving = None

    def observe(self, replica: Replica) -> None:
        """Log what changed since the last call."""
        now = self._now()
        view = RoleView.of(replica)
        previous, self._view = self._view, view
        if view != previous:
            self._changed(previous, view, replica.node_id, now)
        if replica.ticks_since_leader is not None:
            self._heard_leader = now - replica.ticks_since_leader * self._tick

    def _changed(self, was: RoleView | None, view: RoleView, me: NodeId, now: float) -> None:
        same_epoch = was is not None and was.epoch == view.epoch
        if view.role is Role.RECOVERING and not (same_epoch and was and was.role is view.role):
            self._candidate(view, now)
        elif view.serving and not (same_epoch and was and was.serving):
            self._serving_now(view, now)
        elif view.role is Role.LEADER and same_epoch and was and was.serving:
            self._stopped_serving_at = now
            self._line(logging.WARNING, f"leader of epoch {view.epoch} stopped serving: its "
                       "ZooKeeper connection is suspended", role="leader", epoch=view.epoch)
        elif view.role is Role.FOLLOWER and view.leader not in (None, me) and not (
                same_epoch and was and was.leader == view.leader):
            self._following(view, now)

    def _candidate(self, view: RoleView, now: float) -> None:
        grant, granted_at = self._grants.pop(view.epoch, (None, now))
        cause = grant.cause if grant is not None and grant.cause else "ZooKeeper granted it"
        self._led, self._led_since = view.epoch, granted_at
        self._line(logging.INFO, f"candidate for epoch {view.epoch}: {cause}; collecting "
                   "promises from a majority", role="candidate", epoch=view.epoch, cause=cause)

    def _serving_now(self, view: RoleView, now: float) -> None:
        if self._serving != view.epoch:
            since = self._led_since if self._led == view.epoch else now
            took = round(now - since, 3)
            leaderless = round(now - self._heard_leader, 3)
            self._led, self._serving, self._serving_since = view.epoch, view.epoch, now
            self._line(logging.INFO, f"leader of epoch {view.epoch}, serving: took over "
                       f"{took:g} s after ZooKeeper's grant, {leaderless:g} s after this node "
                       "last heard from a leader", role="leader", epoch=view.epoch,
                       takeover_seconds=took, leaderless_seconds=leaderless)
        else:
            paused = round(now - self._stopped_serving_at, 3)
            self._line(logging.INFO, f"leader of epoch {view.epoch} serving again after "
                       f"{paused:g} s", role="leader", epoch=view.epoch)

    def _following(self, view: RoleView, now: float) -> None:
        leaderless = round(now - self._heard_leader, 3)
        self._line(logging.INFO, f"following {view.leader} in epoch {view.epoch} (promised to "
                   f"it as candidate or leader; {leaderless:g} s since this node last heard "
                   "from a leader)", role="follower", epoch=view.epoch, leader=view.leader,
                   leaderless_seconds=leaderless)

    def _line(self, level: int, message: str, **fields: Any) -> None:
        self._log.log(level, message, extra={"fields": {"event": "role", **fields}})
