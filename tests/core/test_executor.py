"""The executor of the Ready contract: what leaves before a batch is durable, and what after."""

from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import Append, AppendAck
from quorapay.core.node_state import Write
from quorapay.core.types import NodeId
from tests.core.harness import ReplicaCluster, account


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
