"""The executor of the Ready contract: what leaves before a batch is durable, and what after."""

from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import Append, AppendAck
from quorapay.core.node_state import Answer, Committed, Write
from quorapay.core.timing import Timing
from quorapay.core.types import NodeId
from tests.core.harness import InFlight, ReplicaCluster, account


def sent_by(cluster: ReplicaCluster, node: str, kind: type) -> list:
    return [m for m in cluster.network if m.src == node and isinstance(m.message, kind)]


def test_a_leaders_appends_leave_beside_its_write_a_followers_ack_only_after_its_own() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    leader, follower = cluster.nodes[NodeId("n1")], cluster.nodes[NodeId("n2")]
    assert leader.executor is not None and follower.executor is not None
    cluster.network.clear()

    leader.state.submit([Write(key=1, commands=(account("x"),))])
    leader.executor.step([])
    batch = leader.executor.pending()
    assert batch is not None and batch.persist is not None and batch.persist.entries
    appends = [m for m in sent_by(cluster, "n1", Append) if m.message.entries]
    assert {m.dst for m in appends} == {"n2", "n3"}  # sent while the leader's fsync runs
    assert leader.replica.commit_index < batch.persist.entries[-1].index
    assert leader.executor.work is not None
    cluster._write(leader, leader.executor.work, batch)
    leader.executor.persisted()

    append = next(m for m in appends if m.dst == "n2")
    follower.executor.step([MessageReceived(sender=NodeId("n1"), message=append.message)])
    written = follower.executor.pending()
    assert written is not None and written.persist is not None
    assert not sent_by(cluster, "n2", AppendAck)  # nothing acknowledged before it is durable
    assert follower.executor.work is not None
    cluster._write(follower, follower.executor.work, written)
    follower.executor.persisted()
    (ack,) = sent_by(cluster, "n2", AppendAck)
    assert ack.message.match_index == batch.persist.entries[-1].index


class Answers:
    def __init__(self) -> None:
        self.given: list[tuple[object, Answer]] = []

    def answer(self, key: object, answer: Answer) -> None:
        self.given.append((key, answer))


def test_a_committed_write_is_answered_beside_the_write_that_applies_it() -> None:
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    leader = cluster.nodes[NodeId("n1")]
    assert leader.executor is not None
    answers = Answers()
    leader.executor.ports.clients = answers
    leader.state.submit([Write(key="w", commands=(account("x"),))])
    leader.executor.step([])
    cluster._process(leader)  # its log write: the entry is not committed yet
    assert answers.given == []
    held: list[InFlight] = []
    cluster.deliver_all(drop=lambda m: m.dst == "n1" and not held.append(m))  # followers write
    acks = [m for m in held if isinstance(m.message, AppendAck)]
    assert acks
    leader.executor.step([MessageReceived(sender=a.src, message=a.message) for a in acks])
    batch = leader.executor.pending()  # ...so it commits: applying it is this write
    assert batch is not None and batch.applied_index is not None
    assert [(k, type(a)) for k, a in answers.given] == [("w", Committed)]  # before the fsync
    assert leader.executor.work is not None
    cluster._write(leader, leader.executor.work, batch)
    leader.executor.persisted()
    cluster.stabilize()
    assert [k for k, _ in answers.given].count("w") == 1  # never answered twice


def test_a_follower_applies_committed_entries_with_its_next_write_or_after_a_pause() -> None:
    cluster = ReplicaCluster(timing=Timing(apply_hold_ticks=2))
    cluster.grant("n1", 1)
    cluster.stabilize()
    follower = cluster["n2"]
    cluster.propose("n1", account("a"))
    cluster.deliver_all()  # n2 holds entry k; n1 commits it (n2 hears of that later)
    k = cluster["n1"].commit_index
    assert follower.last_index == k and follower.applied_index == k - 1
    cluster.propose("n1", account("b"))
    cluster.deliver_all()  # n2 writes k + 1, learns k is committed, applies it in that write
    assert follower.applied_index == k
    disk = cluster.nodes[NodeId("n2")].disk
    assert disk.log[-1].index == k + 1 and disk.applied_index == k
    cluster.tick()  # the commit notice: k + 1 is committed; n2 holds it back a while...
    cluster.deliver_all()
    assert follower.commit_index == k + 1 and follower.applied_index == k
    cluster.tick(3)  # ...and applies it when nothing else comes
    cluster.deliver_all()
    assert follower.applied_index == k + 1
    assert cluster["n1"].applied_index == k + 1  # the leader never holds back
