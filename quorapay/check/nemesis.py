"""The nemesis of a bank test against a real local cluster: one fault at a time, each undone.

Kinds: kill (kill -9 a node or the leader; restart it), pause (SIGSTOP, sometimes past the
session timeout; SIGCONT), partition (isolate the leader, isolate a node, or split the nodes;
heal), zk (cut a node or the leader from ZooKeeper; or, with an ensemble, kill a ZooKeeper
server; undo), skew (set a node's or the leader's wall clock 200 ms to 5 s ahead or behind,
sometimes drifting; put it back), strobe (make a node's wall clock jump back and forth by up to
2 s; put it back). Every start and stop is written to the history.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from quorapay.chaos import network, processes
from quorapay.chaos.links import Faults, read_faults, write_faults
from quorapay.chaos.network import ChaosError
from quorapay.check.history import Event, Nemesis
from quorapay.clock.overrides import clear_skews, skew_path, write_skew
from quorapay.clock.skew import ClockSkew
from quorapay.cluster import runtime, supervisor, zookeeper
from quorapay.cluster.plan import read_plan
from quorapay.config import ClusterConfig

KINDS = ("kill", "pause", "partition", "zk", "skew", "strobe")
SKEWS_MS = (200, 800, 2_000, 5_000)  # within and beyond the default 500 ms bound
Undo = Callable[[], Awaitable[None]]


class BankNemesis:
    def __init__(self, cluster: ClusterConfig, kinds: tuple[str, ...], rng: random.Random,
                 record: Callable[[Event], None], clock: Callable[[], float], *,
                 interval: tuple[float, float] = (2.0, 5.0),
                 duration: tuple[float, float] = (2.0, 8.0)) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ChaosError(f"unknown nemesis kind(s): {', '.join(sorted(unknown))}")
        if set(kinds) & {"partition", "zk"} and not runtime.proxied(cluster):
            raise ChaosError("partition and zk faults need the chaos proxy (a local cluster "
                             "with chaos.proxies = true)")
        self._cluster, self._kinds, self._rng = cluster, kinds, rng
        self._record, self._clock = record, clock
        self._interval, self._duration = interval, duration
        self.injected = 0

    async def run(self, until: float) -> None:
        """Inject faults one at a time until `until` (on the history clock)."""
        while self._kinds and self._clock() < until:
            await trio.sleep(self._rng.uniform(*self._interval))
            if self._clock() >= until:
                return
            kind = self._rng.choice(self._kinds)
            try:
                detail, undo = await getattr(self, f"_{kind}")()
            except ChaosError:
                continue  # e.g. no leader right now: try again later
            self.injected += 1
            self._record(Nemesis(time=self._clock(), fault=kind, phase="start", detail=detail))
            try:
                await trio.sleep(self._rng.uniform(*self._duration))
            finally:
                with trio.CancelScope(shield=True):
                    await undo()
                    self._record(Nemesis(time=self._clock(), fault=kind, phase="stop",
                                         detail=detail))

    async def _target(self) -> str:
        """The leader half the time, else any node."""
        if self._rng.random() < 0.5:
            return (await processes.resolve(self._cluster, "leader")).id
        return self._rng.choice([n.id for n in self._cluster.nodes])

    async def _kill(self) -> tuple[str, Undo]:
        node = self._cluster.node(await self._target())
        processes.kill(self._cluster, node)

        async def undo() -> None:
            if supervisor.node_process(self._cluster, node).pid() is None:
                processes.restart(self._cluster, node)
        return f"killed {node.id}", undo

    async def _pause(self) -> tuple[str, Undo]:
        node = self._cluster.node(await self._target())
        processes.pause(self._cluster, node)

        async def undo() -> None:
            processes.resume(self._cluster, node)
        return f"paused {node.id}", undo

    async def _partition(self) -> tuple[str, Undo]:
        nodes: list[str] = [n.id for n in self._cluster.nodes]
        shape = self._rng.choice(["isolate", "halves"])
        if shape == "isolate":
            groups = [[await self._target()]]
        else:
            shuffled = nodes[:]
            self._rng.shuffle(shuffled)
            groups = [shuffled[: len(nodes) // 2]]
        self._edit(lambda f, p: network.partition(f, p, nodes, groups))
        return f"partition {' | '.join(','.join(g) for g in groups)}", self._heal

    async def _zk(self) -> tuple[str, Undo]:
        if self._cluster.zookeeper.servers > 1 and self._rng.random() < 0.5:
            server = self._rng.choice(list(zookeeper.servers(self._cluster)))
            processes.zk_kill(self._cluster, server)

            async def undo() -> None:
                if zookeeper.tracked(self._cluster, server).pid() is None:
                    processes.zk_restart(self._cluster, server)
            return f"killed ZooKeeper server {server}", undo
        node = await self._target()
        self._edit(lambda f, p: network.cut(f, p, [[node], ["zk"]]))
        return f"cut {node} from ZooKeeper", self._heal

    async def _skew(self) -> tuple[str, Undo]:
        node = await self._target()
        offset = self._rng.choice(SKEWS_MS) * self._rng.choice((-1, 1))
        drift = self._rng.choice((0.0, 0.0, 500.0, -500.0))
        return self._set_clock(node, ClockSkew(offset_ms=offset, drift_ppm=drift))

    async def _strobe(self) -> tuple[str, Undo]:
        node = await self._target()
        amplitude = self._rng.choice((300, 1_000, 2_000))
        return self._set_clock(node, ClockSkew(strobe_ms=amplitude,
                                               strobe_period_s=self._rng.choice((0.3, 1.0))))

    def _set_clock(self, node: str, skew: ClockSkew) -> tuple[str, Undo]:
        path = skew_path(self._cluster.run_dir, node)
        write_skew(path, skew)

        async def undo() -> None:
            path.unlink(missing_ok=True)
        return f"{node} wall clock {skew.describe()}", undo

    def _edit(self, change: Callable[..., tuple[Faults, list[str]]]) -> None:
        path = runtime.faults_path(self._cluster)
        faults, _ = change(read_faults(path), read_plan(runtime.plan_path(self._cluster)))
        write_faults(path, faults)

    async def _heal(self) -> None:
        write_faults(runtime.faults_path(self._cluster), Faults())


def undo_everything(cluster: ClusterConfig) -> None:
    """At the end of a test: heal the network, resume, restart what is down."""
    if runtime.proxied(cluster) and runtime.plan_path(cluster).exists():
        write_faults(runtime.faults_path(cluster), Faults())
    clear_skews(cluster.run_dir)
    for node in cluster.nodes:
        if supervisor.node_process(cluster, node).pid() is None:
            processes.restart(cluster, node)
        elif processes.paused(cluster, node):
            processes.resume(cluster, node)
    if cluster.zookeeper.mode == "local":
        zookeeper.start(cluster)
