"""Random interleavings of grants, zombies, crashes, partitions, reordering and proposals.

ZooKeeper hands out strictly increasing epochs but tells an old leader late or never (a paused
or partitioned zombie); the network reorders, duplicates and drops; processes crash and restart
from disk. After every step: applied sequences agree, durable logs match, money is conserved,
and an applied entry is never lost from a serving leader's log.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quorapay.core.replica import Role
from quorapay.core.timing import Timing
from tests.core.harness import ReplicaCluster, account, transfer

NODES = ("n1", "n2", "n3")
node = st.sampled_from(NODES)


class Interleavings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cluster = ReplicaCluster(NODES, Timing(max_append_weight=3, max_inflight=4))
        self.epoch = 0
        self.transfers = 0
        self.cluster.grant("n1", 1)
        self.epoch = 1

    @rule(target_node=node, revoke_old=st.booleans())
    def grant(self, target_node: str, revoke_old: bool) -> None:
        if revoke_old:
            for leader in self.cluster.leaders():
                self.cluster.revoke(leader)
        self.epoch += 1
        self.cluster.grant(target_node, self.epoch)

    @rule(target_node=node)
    def crash_and_restart(self, target_node: str) -> None:
        self.cluster.crash(target_node)
        self.cluster.restart(target_node)

    @rule(a=node, b=node)
    def cut(self, a: str, b: str) -> None:
        if a != b:
            self.cluster.cut(a, b)

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    @rule(target_node=node, amount=st.integers(1, 50))
    def propose(self, target_node: str, amount: int) -> None:
        self.transfers += 1
        self.cluster.propose(target_node, account("bank", issuer=True), account("alice"),
                             transfer(f"t{self.transfers}", "bank", "alice", amount))

    @rule(target_node=node)
    def read(self, target_node: str) -> None:
        self.cluster.read(target_node)

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
    def leaders_of_later_epochs_hold_every_committed_entry(self) -> None:
        applied = max((n.disk.applied for n in self.cluster.nodes.values()), key=len)
        for n in self.cluster.nodes.values():
            if n.replica.role is Role.LEADER and n.replica.serving:
                log = n.replica.log
                for entry in applied:
                    if self.cluster.commit_epoch[entry.index] < n.replica.epoch:
                        assert entry.index <= log.last_index and log.entry(entry.index) == entry, (
                            f"leader {n.id} of epoch {n.replica.epoch} lacks entry {entry.index}")

    def teardown(self) -> None:
        """After faults stop, a leader granted a fresh epoch commits and everyone converges."""
        cluster = self.cluster
        cluster.heal()
        for leader in cluster.leaders():
            cluster.revoke(leader)
        cluster.grant("n1", self.epoch + 1)
        cluster.stabilize(ticks=30)
        assert cluster["n1"].serving
        p = cluster.propose("n1")
        cluster.stabilize(ticks=30)
        index = cluster.accepted("n1", p).index
        for n in cluster.nodes.values():
            assert n.replica.applied_index >= index
        cluster.check_safety()


TestInterleavings = Interleavings.TestCase
TestInterleavings.settings = settings(max_examples=300, stateful_step_count=80, deadline=None)
