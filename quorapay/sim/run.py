"""Running simulations: one seed, or many across processes, and the command that replays one.

A run has three phases. Fault phase: clients transfer and read while the nemesis injects faults,
for `steps` events. Then every fault is undone; the first client commits a barrier entry, and the
run waits for every node to apply it -- within `recovery_bound` simulated seconds, or the
"commits again after faults" invariant is broken. Last, every acknowledged transfer must be on
every node, as acknowledged.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from quorapay.core.compaction import CompactionPolicy
from quorapay.core.timing import Timing
from quorapay.core.types import NodeId
from quorapay.sim.clients import SimClient
from quorapay.sim.faults import FAULTS, Nemesis
from quorapay.sim.invariants import COVERAGE, Checker
from quorapay.sim.network import Network
from quorapay.sim.node import Setting, SimNode, Variant
from quorapay.sim.world import World
from quorapay.sim.zk_service import ZK, SimZooKeeper


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    nodes: int = 3
    clients: int = 3
    accounts: int = 6
    steps: int = 20_000  # events in the fault phase
    faults: tuple[str, ...] = FAULTS
    recovery_bound: float = 30.0  # simulated seconds for a write to commit after the faults
    compaction: bool = True  # two seeds in three compact their logs (see compaction_for)
    setting: Setting = field(default_factory=lambda: Setting(
        timing=Timing(heartbeat_ticks=2, retransmit_ticks=4, election_timeout_ticks=40),
        tick=0.05, session_timeout=2.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult:
    seed: int
    steps: int
    simulated_seconds: float
    faults: dict[str, int]
    commits: int  # log indexes committed (applied somewhere)
    acknowledged: int  # transfers acknowledged to clients
    violations: tuple[str, ...]
    trace_hash: str | None  # None for a run without tracing
    switchovers: dict[str, int] = field(default_factory=dict)  # handed over; taken by target
    client_errors: dict[str, int] = field(default_factory=dict)  # failures clients were told
    coverage: dict[str, int] = field(default_factory=dict)  # hard states reached, how often

    @property
    def ok(self) -> bool:
        return not self.violations


def compaction_for(seed: int) -> CompactionPolicy | None:
    """Aggressive compaction, so that lagging nodes and recovering leaders need snapshots; in
    three seeds of five that compact, also once the log holds a few dozen commands."""
    if seed % 3 == 0:
        return None
    return CompactionPolicy(every=4 + seed % 29, retain=seed % 4,
                            max_commands=None if seed % 5 < 2 else 6 + seed % 40)


def append_weight_for(seed: int, timing: Timing) -> Timing:
    """One seed in two sends one entry per Append (as a follower far behind gets them, in
    bounded pieces): old entries then reach a follower without the new leader's epoch-start
    entry, which Figure 8 needs."""
    return replace(timing, max_append_weight=1) if seed % 2 else timing


def snapshot_parts_for(seed: int, timing: Timing) -> Timing:
    """Snapshots in tiny parts (one to four rows; one to three sent ahead of the
    acknowledgement), so that every snapshot is streamed in many, and parts get lost,
    duplicated, reordered and resent, and streams are cut by crashes and leader changes; one
    seed in three holds a leader's streams to 300 to 1000 bytes a tick (the rate limit: slow
    enough to pace every stream, fast enough that the ledger a seed builds streams within the
    30 s the simulation allows for recovery)."""
    return replace(timing, snapshot_chunk_rows=1 + seed % 4, snapshot_window=1 + seed % 3,
                   snapshot_bytes_per_tick=0 if seed % 3 != 1 else 300 + seed % 700)


def silence_for(seed: int, timing: Timing) -> Timing:
    """Three seeds in four depose a leader a majority has not heard from for half a second
    (as nodes do by default); the fourth waits for its ZooKeeper session to expire."""
    return timing if seed % 4 == 3 or timing.silence_ticks else \
        replace(timing, silence_ticks=10)


def run_seed(seed: int, options: Options = Options(), variant: Variant = Variant(), *,
             trace: bool = True) -> SeedResult:
    if options.compaction and options.setting.compaction is None:
        options = replace(options, setting=replace(options.setting,
                                                   compaction=compaction_for(seed)))
    options = replace(options, setting=replace(
        options.setting,
        timing=snapshot_parts_for(seed, silence_for(seed, append_weight_for(
            seed, options.setting.timing)))))
    world = World(seed, trace=trace)
    ids = [NodeId(f"n{i}") for i in range(1, options.nodes + 1)]
    network = Network(world, set(ids))
    zookeeper = SimZooKeeper(world, network)
    checker = Checker(world)
    nodes = [SimNode(world, network, zookeeper, node_id, tuple(ids), options.setting, variant,
                     checker) for node_id in ids]
    for node in nodes:
        node.peers = {n.id: n for n in nodes}
    accounts = [f"a{i}" for i in range(1, options.accounts + 1)]
    clients = [SimClient(world, network, f"c{i}", nodes, checker, accounts,
                         opens_accounts=i == 1) for i in range(1, options.clients + 1)]
    clients.append(SimClient(world, network, "monitor", nodes, checker, accounts,
                             opens_accounts=False, reader=True))
    nemesis = Nemesis(world, network, nodes, options.faults)
    for node in nodes:
        node.start()
    for position, client in enumerate(clients):
        client.start(0.5 + (0.0 if position == 0 else 1.0))
    nemesis.start(2.0)
    try:
        while world.steps < options.steps and not checker.violations and world.step():
            pass
        if not checker.violations:
            _recover(world, nodes, clients, nemesis, checker, options.recovery_bound)
        if not checker.violations:
            checker.final(nodes)
    finally:
        for node in nodes:  # a worker runs thousands of seeds: free their disks now
            node.shut_down()
    return SeedResult(seed=seed, steps=world.steps, simulated_seconds=round(world.now, 3),
                      faults=dict(nemesis.injected), commits=checker.commits,
                      acknowledged=len(checker.acknowledged),
                      violations=tuple(str(v) for v in checker.violations),
                      trace_hash=world.trace_hash, switchovers=dict(checker.switchovers),
                      client_errors=_errors(clients),
                      coverage=dict(sorted(checker.coverage.items())))


def _errors(clients: list[SimClient]) -> dict[str, int]:
    total: dict[str, int] = {}
    for client in clients:
        for code, n in client.stats.errors.items():
            total[code] = total.get(code, 0) + n
    return dict(sorted(total.items()))


def _recover(world: World, nodes: list[SimNode], clients: list[SimClient], nemesis: Nemesis,
             checker: Checker, bound: float) -> None:
    """Undo the faults. Every client finishes what it was doing; a barrier commits; and every
    node applies everything acknowledged, on its disk -- all within `bound` seconds."""
    nemesis.stop()
    for client in clients:
        client.stopped = True
    probe = SimClient(world, clients[0].network, "probe", nodes, checker, [],
                      opens_accounts=False)
    probe.barrier()
    deadline = world.now + bound
    while world.now < deadline and not checker.violations:
        if probe.barrier_index is not None and all(c.idle for c in clients):
            target = max(probe.barrier_index, checker.highest_acknowledged)
            if all(n.state is not None and n.state.durable_applied >= target for n in nodes):
                return
        if not world.step():
            break
    if not checker.violations:
        checker.violation("commits again after faults",
                          f"no write committed on every node within {bound:g}s of the last fault")


# ---------------------------------------------------------------------------- many seeds

def run_seeds(seeds: list[int], options: Options, workers: int) -> Iterator[SeedResult]:
    """Results in seed order, computed by `workers` processes."""
    if workers <= 1 or len(seeds) <= 1:
        for seed in seeds:
            yield run_checked(seed, options)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_ignore_interrupts) as pool:  # Ctrl-C: the caller's
        yield from pool.imap(_run_one, [(seed, options) for seed in seeds], chunksize=4)


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C, sent to the whole process group, is for the parent to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_checked(seed: int, options: Options, variant: Variant = Variant()) -> SeedResult:
    """Run a seed without tracing; a failing seed runs again, traced, and must fail the same
    way: its trace hash is the one its replay shows."""
    result = run_seed(seed, options, variant, trace=False)
    if result.ok:
        return result
    traced = run_seed(seed, options, variant)
    if traced.violations != result.violations:
        differs = f"replay is exact: the traced run of seed {seed} found {list(traced.violations)}"
        return replace(traced, violations=(*result.violations, differs))
    return traced


def _run_one(job: tuple[int, Options]) -> SeedResult:
    return run_checked(*job)


def replay_command(seed: int, options: Options) -> str:
    faults = ",".join(options.faults) if options.faults else "none"
    return (f"quorapay sim --seed {seed} --steps {options.steps} --nodes {options.nodes} "
            f"--faults {faults}" + ("" if options.compaction else " --no-compaction"))


__all__ = ["COVERAGE", "FAULTS", "ZK", "Options", "SeedResult", "replay_command", "run_seed",
           "run_seeds"]
