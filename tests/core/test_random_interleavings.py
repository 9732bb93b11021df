"""Random interleavings of grants, zombies, crashes, partitions, reordering and proposals.

ZooKeeper hands out strictly increasing epochs but tells an old leader late or never (a paused
or partitioned zombie); the network reorders, duplicates and drops; processes crash and restart
from disk. After every step: applied sequences agree, durable logs match, money is conserved,
and an applied entry is never lost from a serving leader's log.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quorapay.core.ready import ReadsConfirmed
from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from tests.core.harness import ReplicaCluster, account, transfer

NODES = ("n1", "n2", "n3")
node = st.integers(0, 4)  # an index into the machine's nodes, modulo their number


class Interleavings(RuleBasedStateMachine):
    nodes: tuple[str, ...] = NODES
    timing = Timing(max_append_weight=3, max_inflight=4)

    def pick(self, index: int) -> str:
        return self.nodes[index % len(self.nodes)]

    def __init__(self) -> None:
        super().__init__()
        self.cluster = ReplicaCluster(self.nodes, self.timing)
        self.transfers = 0
        self.read_floor: dict[int, int] = {}  # read -> entries applied anywhere when asked
        self.cluster.grant("n1", 1)
        self.epoch = 1

    @rule(target_node=node, revoke_old=st.booleans())
    def grant(self, target_node: int, revoke_old: bool) -> None:
        if revoke_old:
            for leader in self.cluster.leaders():
                self.cluster.revoke(leader)
        self.epoch += 1
        self.cluster.grant(self.pick(target_node), self.epoch)

    @rule(target_node=node)
    def crash_and_restart(self, target_node: int) -> None:
        self.cluster.crash(self.pick(target_node))
        self.cluster.restart(self.pick(target_node))

    @rule(target_node=node)
    def crash(self, target_node: int) -> None:
        self.cluster.crash(self.pick(target_node))

    @rule(target_node=node)
    def restart(self, target_node: int) -> None:
        if not self.cluster.nodes[self.pick(target_node)].up:
            self.cluster.restart(self.pick(target_node))

    @rule(a=node, b=node)
    def cut(self, a: int, b: int) -> None:
        if self.pick(a) != self.pick(b):
            self.cluster.cut(self.pick(a), self.pick(b))

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    @rule(target_node=node, amount=st.integers(1, 50))
    def propose(self, target_node: int, amount: int) -> None:
        self.transfers += 1
        self.cluster.propose(self.pick(target_node), account("bank", issuer=True), account("alice"),
                             transfer(f"t{self.transfers}", "bank", "alice", amount))

    @rule(target_node=node)
    def read(self, target_node: int) -> None:
        floor = max(n.disk.applied_index for n in self.cluster.nodes.values())
        for token in self.cluster.read(self.pick(target_node)):
            self.read_floor[token] = floor

    @rule(target_node=node, keep=st.integers(0, 3))
    def compact(self, target_node: int, keep: int) -> None:
        """Forget applied entries: peers that need them will get a snapshot."""
        name = self.pick(target_node)
        if self.cluster.nodes[name].up:
            self.cluster.compact(name, self.cluster[name].applied_index - keep)

    @rule(position=st.integers(0, 1000), count=st.integers(1, 40))
    def deliver_some(self, position: int, count: int) -> None:
        for i in range(count):
            self.cluster.deliver_at(position + i)

    @rule(position=st.integers(0, 1000))
    def duplicate(self, position: int) -> None:
        self.cluster.duplicate_at(position)

    @precondition(lambda self: bool(self.cluster.network))
    @rule(position=st.integers(0, 1000))
    def drop(self, position: int) -> None:
        self.cluster.network.rotate(-(position % len(self.cluster.network)))
        self.cluster.network.popleft()

    @rule(ticks=st.integers(1, 8))
    def tick(self, ticks: int) -> None:
        self.cluster.tick(ticks)

    @invariant()
    def safe(self) -> None:
        self.cluster.check_safety()
        for n in self.cluster.nodes.values():
            assert all(total == 0 for total in n.ledger.totals().values())

    @invariant()
    def reads_are_linearizable(self) -> None:
        """A confirmed read reflects everything applied anywhere before it was asked."""
        for n in self.cluster.nodes.values():
            for outcome in n.outcomes:
                if isinstance(outcome, ReadsConfirmed):
                    for token in outcome.reads:
                        assert outcome.index >= self.read_floor[token], f"stale read {token}"

    @invariant()
    def leaders_of_later_epochs_hold_every_committed_entry(self) -> None:
        applied = {e.index: e for n in self.cluster.nodes.values() for e in n.disk.applied}
        for n in self.cluster.nodes.values():
            if n.replica.role is Role.LEADER and n.replica.serving:
                log = n.replica.log
                for entry in applied.values():
                    if entry.index <= log.start:
                        continue  # compacted there: applied, or installed from a snapshot
                    if self.cluster.commit_epoch[entry.index] < n.replica.epoch:
                        assert entry.index <= log.last_index and log.entry(entry.index) == entry, (
                            f"leader {n.id} of epoch {n.replica.epoch} lacks entry {entry.index}")

    def teardown(self) -> None:
        """After faults stop, a leader granted a fresh epoch commits and everyone converges."""
        cluster = self.cluster
        cluster.heal()
        for n in self.nodes:
            if not cluster.nodes[n].up:
                cluster.restart(n)
        for leader in cluster.leaders():
            cluster.revoke(leader)
        cluster.grant("n1", self.epoch + 1)
        cluster.stabilize(ticks=60)
        assert cluster["n1"].serving
        p = cluster.propose("n1")
        cluster.stabilize(ticks=60)
        index = cluster.accepted("n1", p).index
        for n in cluster.nodes.values():
            assert n.replica.applied_index >= index
        cluster.check_safety()
        ledgers = {(n.replica.applied_index, n.ledger.digest()) for n in cluster.nodes.values()}
        assert len({i for i, _ in ledgers}) == len(ledgers), f"ledgers differ: {ledgers}"


class FiveNodesFastTimeouts(Interleavings):
    """More nodes, tiny batches and timeouts that fire often: step-downs and retransmits."""

    nodes = ("n1", "n2", "n3", "n4", "n5")
    timing = Timing(max_append_weight=2, max_inflight=3, heartbeat_ticks=1, retransmit_ticks=2,
                    election_timeout_ticks=6)


for machine in (Interleavings, FiveNodesFastTimeouts):
    machine.TestCase.settings = settings(max_examples=150, stateful_step_count=80,
                                         deadline=None)
TestInterleavings = Interleavings.TestCase
TestFiveNodesFastTimeouts = FiveNodesFastTimeouts.TestCase
