"""The simulated network between nodes, clients and ZooKeeper.

Endpoints are names ("n1", "c1", "zk"). A directed link can be cut (a partition). Peer links
between nodes lose what is sent or in flight on a cut link (the node's websocket would drop it and
reconnect), delay randomly (so messages reorder), and drop or duplicate at the current rates.
Links to ZooKeeper and to clients are TCP connections: in order, never duplicated, and what is
sent on a cut link is retransmitted once it heals (endpoints decide what a late message means).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from quorapay.sim.world import World

BASE_DELAY = 0.0005
JITTER = 0.004


class Network:
    def __init__(self, world: World, nodes: set[str]) -> None:
        self._world = world
        self._nodes = nodes
        self._cuts: Counter[tuple[str, str]] = Counter()  # faults may overlap: count them
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.extra_delay = 0.0
        self._fifo_ready: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], list[tuple[Callable[..., Any], tuple[Any, ...]]]] = {}

    def up(self, src: str, dst: str) -> bool:
        return self._cuts[(src, dst)] == 0

    def cut(self, links: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Cut these directed links until `restore` is given the returned list."""
        cut = list(links)
        self._cuts.update(cut)
        return cut

    def restore(self, links: list[tuple[str, str]]) -> None:
        self._cuts.subtract(links)
        self._cuts = +self._cuts
        self._retransmit()

    def _retransmit(self) -> None:
        """TCP: what waited on a link that is up again is delivered, in order."""
        for link in [link for link in self._held if self.up(*link)]:
            for deliver, args in self._held.pop(link):
                self._tcp(link[0], link[1], deliver, args)

    def send(self, src: str, dst: str, deliver: Callable[..., Any], *args: Any) -> None:
        rng = self._world.rng
        if src in self._nodes and dst in self._nodes:
            if not self.up(src, dst) or rng.random() < self.drop_rate:
                return
            copies = 2 if rng.random() < self.duplicate_rate else 1
            for _ in range(copies):
                delay = BASE_DELAY + rng.random() * JITTER + self.extra_delay
                self._world.at(delay, self._arrive, src, dst, deliver, args)
            return
        self._tcp(src, dst, deliver, args)

    def _tcp(self, src: str, dst: str, deliver: Callable[..., Any], args: tuple[Any, ...]
             ) -> None:
        if not self.up(src, dst) or (src, dst) in self._held:
            self._held.setdefault((src, dst), []).append((deliver, args))
            return
        earliest = self._world.now + BASE_DELAY + self._world.rng.random() * JITTER
        arrival = max(earliest + self.extra_delay, self._fifo_ready.get((src, dst), 0.0))
        self._fifo_ready[(src, dst)] = arrival
        self._world.at(arrival - self._world.now, self._arrive, src, dst, deliver, args)

    def _arrive(self, src: str, dst: str, deliver: Callable[..., Any], args: tuple[Any, ...]
                ) -> None:
        if self.up(src, dst):
            deliver(*args)
        elif src in self._nodes and dst in self._nodes:
            return  # a peer link cut with the message on it loses it
        else:
            self._held.setdefault((src, dst), []).append((deliver, args))

    def heal(self) -> None:
        self._cuts.clear()
        self.drop_rate = self.duplicate_rate = self.extra_delay = 0.0
        self._retransmit()


def between(a: Iterable[str], b: Iterable[str]) -> list[tuple[str, str]]:
    """Every directed link between two groups of endpoints, both ways."""
    a, b = list(a), list(b)
    return [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]
