"""A staged fault that drives a cluster into Raft's Figure 8: an entry of an older epoch held by a
majority, and a node holding a different entry at its index from a newer (but not newest) epoch.

1. The leader A is cut from its peers: it appends what clients still send it, on its own disk.
2. Once another node B takes over (a newer epoch), it is cut off in turn the moment it leads:
   its epoch-start entry sits at the same index as A's entries, on B alone. A is let back.
3. If A leads again it adopts its own log and replicates its old entries to the third node C
   -- the Figure 8 state -- while the Appends that carry entries of A's new epoch are lost on
   the way to C. The moment A applies an entry (its clients are answered) it dies, and what it
   had not sent its peers yet is lost with it. B is let back soon after: the next leader must
   choose between B's log (newer last epoch) and C's. A correct A commits nothing while C lacks
   its epoch-start entry; an A that committed old entries by counting replicas lost them now.

Each stage gives up after STAGE_TIMEOUT and undoes what it did; so does the nemesis's stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from quorapay.core.messages import Append
from quorapay.core.ready import Outgoing
from quorapay.core.replica import Role
from quorapay.core.types import Epoch
from quorapay.sim.network import Network, between
from quorapay.sim.world import World

if TYPE_CHECKING:
    from quorapay.sim.node import SimNode

POLL = 0.01  # seconds between looks at the cluster
STAGE_TIMEOUT = 8.0


class Figure8:
    def __init__(self, world: World, network: Network, nodes: list[SimNode],
                 done: Callable[[], None]) -> None:
        self._world, self._network, self._nodes = world, network, nodes
        self._done = done  # told when the scenario is over (it may run one at a time)
        self._cuts: list[list[tuple[str, str]]] = []
        self._over = False
        self.killed: SimNode | None = None  # A, if stage 3 killed it: restart it later
        self._lossy: SimNode | None = None  # the node whose messages to C are being lost

    def start(self, leader: SimNode) -> None:
        self._a = leader
        self._epoch = _epoch(leader)
        self._cut(leader)
        self._wait(self._b_took_over, self._stage_two)

    def stop(self) -> None:
        """Undo every cut (the nemesis restarts a killed A)."""
        if self._over:
            return
        self._over = True
        if self._lossy is not None:
            self._lossy.lose = None
        for cut in self._cuts:
            self._network.restore(cut)
        self._cuts.clear()
        self._done()

    # ------------------------------------------------------------------ stages

    def _b_took_over(self) -> SimNode | None:
        return next((n for n in self._nodes if n is not self._a and n.up
                     and n.state is not None and n.state.replica.role is not Role.FOLLOWER
                     and _epoch(n) > self._epoch), None)

    def _stage_two(self, b: SimNode) -> None:
        """B recovers: cut it off the moment it leads, before its epoch-start entry leaves."""
        self._b, self._epoch = b, _epoch(b)

        def watch(node: SimNode) -> None:
            state = node.state
            if self._over or state is None or _epoch(node) != self._epoch:
                node.watchers.remove(watch)
                self.stop()
            elif state.replica.role is Role.LEADER:
                node.watchers.remove(watch)
                self._cut(b)
                self._network.restore(self._cuts.pop(0))  # A back with C
                self._wait(self._a_leads_again, self._stage_three)
        b.watchers.append(watch)

    def _a_leads_again(self) -> SimNode | None:
        a = self._a
        if a.up and a.state is not None and a.state.replica.role is Role.LEADER \
                and _epoch(a) > self._epoch:
            return a
        other = next((n for n in self._nodes if n is not a and n is not self._b
                      and n.state is not None and _epoch(n) > self._epoch
                      and n.state.replica.role is Role.LEADER), None)
        if other is not None:
            self.stop()  # C took over instead: no Figure 8 this time
        return None

    def _stage_three(self, a: SimNode) -> None:
        """A leads again: C gets A's old entries but loses every Append that carries one of
        A's new epoch. The moment A applies an entry (and answers its clients), it dies -- what
        it had not sent to its peers yet is lost with it -- and B is let back."""
        assert a.state is not None
        epoch, start = _epoch(a), a.state.applied_index
        c = next(n for n in self._nodes if n is not a and n is not self._b)

        def lose(outgoing: Outgoing) -> bool:
            message = outgoing.message
            return outgoing.to == c.id and isinstance(message, Append) and any(
                e.epoch == epoch for e in message.entries)
        a.lose = lose
        self._lossy = a

        def watch(node: SimNode) -> None:
            state = node.state
            if self._over or state is None or _epoch(node) != epoch:
                node.watchers.remove(watch)
                self.stop()
            elif state.applied_index > start:  # committed, applied, about to be answered
                node.watchers.remove(watch)
                self._cut(a)  # its unsent messages die with it
                self._world.at(0.0, self._kill, a)
        a.watchers.append(watch)

    def _kill(self, a: SimNode) -> None:
        if self._over:
            return
        if a.up:
            a.crash()
            self.killed = a
        self._world.at(self._world.rng.uniform(0.05, 0.5), self.stop)  # B back

    # ------------------------------------------------------------------ helpers

    def _cut(self, node: SimNode) -> None:
        peers = [n.id for n in self._nodes if n is not node]
        self._cuts.append(self._network.cut(between([node.id], peers)))

    def _wait(self, condition: Callable[[], SimNode | None],
              then: Callable[[SimNode], None]) -> None:
        deadline = self._world.now + STAGE_TIMEOUT

        def look() -> None:
            if self._over:
                return
            found = condition()
            if found is not None:
                then(found)
            elif self._world.now >= deadline:
                self.stop()
            elif not self._over:
                self._world.at(POLL, look)
        self._world.at(POLL, look)


def _epoch(node: SimNode) -> Epoch:
    return node.state.replica.promised_epoch if node.state is not None else Epoch(0)
