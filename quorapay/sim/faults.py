"""The nemesis: faults injected at random times, each undone after a random while.

| fault | what happens |
|---|---|
| kill | a node dies (often mid-batch), restarts later: memory, that batch, unfsynced writes lost |
| pause | a node stops (SIGSTOP) and resumes later, possibly past its session timeout |
| partition | the nodes split into two groups that cannot talk |
| zk | a node is cut from ZooKeeper |
| net | peer links drop, duplicate and delay messages |
| clock | a node's clock runs fast or slow: its timers fire early or late |
| skew | a node's wall clock is set ahead or behind, within or beyond the maximum offset |
| disk | a node's fsync becomes slow |
| storage | a node's next write fails (dies in it, fsync EIO, disk full), or it dies just after it |
| switchover | an operator asks a node (the leader, mostly) to hand leadership over |
| figure8 | a staged sequence of cuts and a kill that builds Raft's Figure 8 (`sim/figure8.py`) |

At most a minority of nodes is killed or paused at once, so the cluster can make progress between
faults; `stop` undoes everything at the end of the fault phase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from quorapay.sim.figure8 import Figure8
from quorapay.sim.network import Network, between
from quorapay.sim.node import FSYNC, SimNode, SwitchoverOrder
from quorapay.sim.world import World
from quorapay.sim.zk_service import ZK

FAULTS = ("kill", "pause", "partition", "zk", "net", "clock", "skew", "disk", "storage",
          "switchover", "figure8")
SKEWS_MS = (100, 400, 1500, 6000)  # the default maximum offset is 500 ms
INTERVAL = (0.2, 2.0)  # seconds between two faults
DURATION = (0.3, 5.0)  # how long one lasts


class Nemesis:
    def __init__(self, world: World, network: Network, nodes: list[SimNode],
                 kinds: tuple[str, ...]) -> None:
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
        self._world, self._network, self._nodes = world, network, nodes
        self._kinds = kinds
        self.injected: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []
        self._stopped = False
        self._staged: Figure8 | None = None  # a Figure 8 scenario under way

    def start(self, delay: float) -> None:
        if self._kinds:
            self._world.at(delay, self._inject)

    def stop(self) -> None:
        """Undo every fault still in effect: heal, resume, restart, reset."""
        self._stopped = True
        if self._staged is not None:
            self._staged.stop()
        for undo in self._undo:
            undo()
        self._undo.clear()
        self._network.heal()
        for node in self._nodes:
            node.rate, node.fsync, node.wall_offset_ms = 1.0, FSYNC, 0
            node.process.resume()
            if not node.up:
                node.start()

    def _inject(self) -> None:
        if self._stopped:
            return
        kind = self._world.rng.choice(self._kinds)
        if getattr(self, f"_{kind}")():
            self.injected[kind] += 1
        self._world.at(self._world.rng.uniform(*INTERVAL), self._inject)

    def _later(self, undo: Callable[[], None]) -> None:
        """Undo after a random duration (or at stop, whichever comes first)."""
        self._undo.append(undo)

        def run() -> None:
            if undo in self._undo:
                self._undo.remove(undo)
                undo()
        self._world.at(self._world.rng.uniform(*DURATION), run)

    def _victim(self) -> SimNode | None:
        """A node that may be killed or paused without stopping a majority."""
        down = [n for n in self._nodes if not n.up or n.process.paused or n.disk.armed
                or n.crash_after_write is not None]
        if len(down) >= (len(self._nodes) - 1) // 2:
            return None
        candidates = [n for n in self._nodes if n.up and not n.process.paused]
        writing = [n for n in candidates if n.writing]  # a crash with a batch half-way there
        if writing and self._world.rng.random() < 0.5:
            return self._world.rng.choice(writing)
        return self._world.rng.choice(candidates)

    # ------------------------------------------------------------------ the faults

    def _kill(self) -> bool:
        node = self._victim()
        if node is None:
            return False
        node.crash()
        self._later(lambda: None if node.up else node.start())
        return True

    def _storage(self) -> bool:
        node = self._victim()
        if node is None:
            return False
        rng, disk = self._world.rng, node.disk
        fault = rng.choice(("die", "die", "fsync", "full", "between", "between"))
        if fault == "die":
            disk.die_after(rng.randrange(0, 16))
        elif fault == "between":  # after the next write: before its sends, or among them
            node.crash_after_write = rng.choice((0, 0, rng.randrange(1, 4)))
        elif fault == "fsync":
            disk.fail_syncs(1)
        else:
            disk.full = True

        def undo() -> None:
            disk.disarm()
            node.crash_after_write = None
            if not node.up:
                node.start()
        self._later(undo)
        return True

    def _pause(self) -> bool:
        node = self._victim()
        if node is None:
            return False
        node.process.pause()
        self._later(node.process.resume)
        return True

    def _partition(self) -> bool:
        ids = [n.id for n in self._nodes]
        self._world.rng.shuffle(ids)
        split = self._world.rng.randint(1, len(ids) - 1)
        cut = self._network.cut(between(ids[:split], ids[split:]))
        self._later(lambda: self._network.restore(cut))
        return True

    def _zk(self) -> bool:
        node = self._world.rng.choice(self._nodes)
        cut = self._network.cut(between([node.id], [ZK]))
        self._later(lambda: self._network.restore(cut))
        return True

    def _net(self) -> bool:
        rng, network = self._world.rng, self._network
        network.drop_rate = rng.uniform(0, 0.3)
        network.duplicate_rate = rng.uniform(0, 0.2)
        network.extra_delay = rng.uniform(0, 0.05)

        def undo() -> None:
            network.drop_rate = network.duplicate_rate = network.extra_delay = 0.0
        self._later(undo)
        return True

    def _clock(self) -> bool:
        node = self._world.rng.choice(self._nodes)
        node.rate = self._world.rng.choice([0.5, 0.8, 1.25, 2.0])

        def undo() -> None:
            node.rate = 1.0
        self._later(undo)
        return True

    def _skew(self) -> bool:
        """A node's wall clock set ahead or behind; half the time the leader's, set ahead, so
        that the next takeover is by a node whose clock is behind the log's timestamps."""
        rng = self._world.rng
        leading = [n for n in self._nodes
                   if n.up and n.state is not None and n.state.replica.serving]
        if leading and rng.random() < 0.5:
            node, sign = rng.choice(leading), 1
        else:
            node, sign = rng.choice(self._nodes), rng.choice([-1, 1])
        node.wall_offset_ms = rng.choice(SKEWS_MS) * sign

        def undo() -> None:
            node.wall_offset_ms = 0
        self._later(undo)
        return True

    def _disk(self) -> bool:
        node = self._world.rng.choice(self._nodes)
        slow = self._world.rng.uniform(0.02, 0.3)
        node.fsync = (slow / 2, slow)

        def undo() -> None:
            node.fsync = FSYNC
        self._later(undo)
        return True

    def _figure8(self) -> bool:
        leading = [n for n in self._nodes if n.up and not n.process.paused
                   and n.state is not None and n.state.replica.serving]
        if self._staged is not None or not leading or len(self._nodes) < 3:
            return False
        scenario = Figure8(self._world, self._network, self._nodes, lambda: self._end(scenario))
        self._staged = scenario
        scenario.start(self._world.rng.choice(leading))
        return True

    def _end(self, scenario: Figure8) -> None:
        self._staged = None
        killed = scenario.killed
        if killed is not None and not self._stopped:
            self._later(lambda: None if killed.up else killed.start())

    def _switchover(self) -> bool:
        """Not a fault but an operator's order, sent where it lands in the real cluster: to the
        node believed to lead (any node, if none is known), for a random target or none."""
        rng = self._world.rng
        up = [n for n in self._nodes if n.up]
        if not up:
            return False
        leading = [n for n in up if n.state is not None and n.state.replica.serving]
        node = rng.choice(leading or up)
        others = [n.id for n in self._nodes if n is not node]
        to = rng.choice([None, *others])
        node.process.call(node.process.incarnation, node.deliver, SwitchoverOrder(to=to))
        return True
