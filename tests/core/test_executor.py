"""The executor of the Ready contract: what leaves before a batch is durable, and what after."""

import dataclasses

from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived, Ticked
from quorapay.core.messages import Append, AppendAck, AppendNack, ClockEcho
from quorapay.core.node_state import Answer, Committed, Write
from quorapay.core.replica import Replica, Role
from quorapay.core.timing import Timing
from quorapay.core.types import AccountId, Commands, Epoch, LogEntry, LogIndex, NodeId
from tests.core.harness import InFlight, Node, ReplicaCluster, account, transfer


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
    (batch,) = leader.executor.pending()
    assert batch.persist is not None and batch.persist.entries
    appends = [m for m in sent_by(cluster, "n1", Append) if m.message.entries]
    assert {m.dst for m in appends} == {"n2", "n3"}  # sent while the leader's fsync runs
    assert leader.replica.commit_index < batch.persist.entries[-1].index
    leader.executor.persisted()  # (the harness's observer writes it to the model disk)

    append = next(m for m in appends if m.dst == "n2")
    follower.executor.step([MessageReceived(sender=NodeId("n1"), message=append.message)])
    (written,) = follower.executor.pending()
    assert written.persist is not None
    assert not sent_by(cluster, "n2", AppendAck)  # nothing acknowledged before it is durable
    follower.executor.persisted()
    (ack,) = sent_by(cluster, "n2", AppendAck)
    assert ack.message.match_index == batch.persist.entries[-1].index


class Answers:
    def __init__(self) -> None:
        self.given: list[tuple[object, Answer]] = []

    def answer(self, key: object, answer: Answer) -> None:
        self.given.append((key, answer))


def test_a_committed_write_is_answered_at_once_its_apply_rows_join_the_next_log_write() -> None:
    """Answered when its entry commits; the ledger rows it changed wait (two ticks at most) for
    a log write to share one transaction with, as the applied state on disk is a checkpoint."""
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
    assert leader.executor.pending() == []  # ...so it commits: the apply rows are held
    assert [(k, type(a)) for k, a in answers.given] == [("w", Committed)]
    applied = leader.state.applied_index
    assert leader.state.durable_applied < applied
    leader.state.submit([Write(key="v", commands=(account("y"),))])
    leader.executor.step([])
    (batch,) = leader.executor.pending()  # the next entry's log write carries them
    assert batch.persist is not None and batch.persist.entries
    assert batch.applied_index == applied and "x" in batch.delta.accounts
    leader.executor.persisted()
    assert leader.state.durable_applied == applied
    cluster.stabilize()  # ...and the rows of "v" go alone after two ticks
    assert leader.state.durable_applied == leader.state.applied_index
    assert leader.disk.applied_index == leader.state.applied_index
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


def test_a_leader_heartbeats_and_takes_writes_while_its_write_is_in_flight() -> None:
    """Writes are pipelined: a slow disk delays what depends on it, not the leader."""
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    leader = cluster.nodes[NodeId("n1")]
    assert leader.executor is not None
    cluster.network.clear()
    leader.state.submit([Write(key=1, commands=(account("x"),))])
    leader.executor.step([])
    (first,) = leader.executor.pending()  # ...and its fsync does not return for a while
    for _ in range(cluster.timing.heartbeat_ticks):
        leader.executor.step([Ticked()])
        assert leader.executor.pending() == []  # heartbeats need no write
    heartbeats = [m for m in sent_by(cluster, "n1", Append) if not m.message.entries]
    assert {m.dst for m in heartbeats} == {"n2", "n3"}
    leader.state.submit([Write(key=2, commands=(account("y"),))])
    leader.executor.step([])
    (second,) = leader.executor.pending()  # the next entry goes to the writer behind it
    assert first.persist is not None and second.persist is not None
    assert second.persist.keep_upto == first.persist.entries[-1].index
    assert leader.executor.in_flight == 2
    leader.executor.persisted(2)  # one transaction for both (group commit)
    cluster.stabilize()
    assert leader.replica.commit_index >= second.persist.entries[-1].index


def test_a_reply_waits_for_every_earlier_write_not_only_its_own() -> None:
    """A follower's ack of a heartbeat writes nothing, but it claims the entries that the
    write in flight carries: it leaves only once that write is durable."""
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    follower = cluster.nodes[NodeId("n2")]
    assert follower.executor is not None
    cluster.propose("n1", account("x"))
    append = next(m for m in cluster.network if m.dst == "n2" and isinstance(m.message, Append)
                  and m.message.entries)
    cluster.network.clear()
    follower.executor.step([MessageReceived(sender=NodeId("n1"), message=append.message)])
    (written,) = follower.executor.pending()
    assert written.persist is not None
    cluster.tick(cluster.timing.heartbeat_ticks, only=("n1",))
    heartbeat = next(m for m in cluster.network if m.dst == "n2"
                     and isinstance(m.message, Append) and not m.message.entries)
    follower.executor.step([MessageReceived(sender=NodeId("n1"), message=heartbeat.message)])
    assert follower.executor.pending() == []
    assert not sent_by(cluster, "n2", AppendAck)  # both wait for the write in flight
    follower.executor.persisted()
    acks = sent_by(cluster, "n2", AppendAck)
    assert [a.message.seq for a in acks] == [append.message.seq, heartbeat.message.seq]
    assert acks[0].message.match_index == written.persist.entries[-1].index


def leader_with_accounts(cluster: ReplicaCluster) -> tuple[ReplicaCluster, Node]:
    """n1 leads and has committed an issuer `bank` and an account `a`."""
    cluster.grant("n1", 1)
    cluster.stabilize()
    cluster.propose("n1", account("bank", issuer=True), account("a"))
    cluster.stabilize()
    return cluster, cluster.nodes[NodeId("n1")]


def test_a_batch_writes_the_balances_it_staged_not_later_ones() -> None:
    """A write lands after later entries were applied in memory: it must still write the
    account rows as of its own entries (with its own applied index)."""
    cluster, leader = leader_with_accounts(ReplicaCluster())
    assert leader.executor is not None
    batches = []
    for i in (1, 2):
        leader.state.submit([Write(key=i, commands=(transfer(f"t{i}", "bank", "a", 10),))])
        leader.executor.step([])
        batches += leader.executor.pending()
        cluster.deliver_all(drop=lambda m: m.dst == "n1" and not held.append(m))
        leader.executor.step([MessageReceived(sender=m.src, message=m.message) for m in held])
        held.clear()
        batches += leader.executor.pending()
    applies = [b for b in batches if b.applied_index is not None]
    assert [b.delta.accounts["a"].balance for b in applies] == [10]  # with t2's log write
    assert leader.ledger.accounts[AccountId("a")].balance == 20  # applied since, in memory
    leader.executor.persisted(len(batches))
    for _ in range(leader.state.replica.timing.apply_hold_ticks):
        leader.executor.step([Ticked()])
        batches = leader.executor.pending()
    (flush,) = batches  # t2's rows, alone: no log write came within the hold
    assert flush.persist is None and flush.delta.accounts["a"].balance == 20
    leader.executor.persisted()


def test_a_leader_holds_no_apply_rows_when_the_hold_is_off() -> None:
    """apply_hold_ticks = 0: a leader's commit is written as soon as it applies, alone."""
    cluster, leader = leader_with_accounts(
        ReplicaCluster(timing=dataclasses.replace(Timing(), apply_hold_ticks=0)))
    assert leader.executor is not None
    leader.state.submit([Write(key=1, commands=(transfer("t1", "bank", "a", 10),))])
    leader.executor.step([])
    (logged,) = leader.executor.pending()
    cluster.deliver_all(drop=lambda m: m.dst == "n1" and not held.append(m))
    leader.executor.persisted()
    leader.executor.step([MessageReceived(sender=m.src, message=m.message) for m in held])
    held.clear()
    (applied,) = leader.executor.pending()
    assert logged.applied_index is None and applied.persist is None
    assert applied.delta.accounts["a"].balance == 10
    leader.executor.persisted()

held: list[InFlight] = []


def test_a_leader_whose_followers_replies_wait_on_their_disks_stays_in_contact() -> None:
    """A disk stall across the cluster holds every acknowledgement back; the followers'
    clock echoes still leave at once, and the leader does not step down for want of them."""
    cluster = ReplicaCluster()
    cluster.grant("n1", 1)
    cluster.stabilize()
    replies = (AppendAck, AppendNack)
    for _ in range(cluster.timing.election_timeout_ticks + 10):
        cluster.tick()
        cluster.deliver_all(drop=lambda m: m.dst == "n1" and isinstance(m.message, replies))
    assert cluster["n1"].role is Role.LEADER
    for _ in range(cluster.timing.election_timeout_ticks + 10):  # without echoes it would not
        cluster.tick()
        cluster.deliver_all(drop=lambda m: m.dst == "n1" and isinstance(
            m.message, (AppendAck, AppendNack, ClockEcho)))
    assert cluster["n1"].role is not Role.LEADER


def test_a_leader_whose_disk_hangs_steps_down_after_the_write_stall_time() -> None:
    """Its heartbeats need no disk, so its followers cannot tell; it must tell itself."""
    timing = Timing(write_stall_ticks=60)
    cluster = ReplicaCluster(timing=timing)
    cluster.grant("n1", 1)
    cluster.stabilize()
    leader = cluster.nodes[NodeId("n1")]
    leader.hung = 1
    cluster.propose("n1", account("x"))
    for _ in range(timing.write_stall_ticks - 2):
        cluster.tick()
        cluster.deliver_all()
    assert cluster["n1"].role is Role.LEADER  # heartbeats and acknowledgements flow
    cluster.tick(3)
    assert cluster["n1"].role is not Role.LEADER  # (past the election timeout: not contact)


def test_a_cut_while_a_write_is_in_flight_bounds_what_that_write_makes_durable() -> None:
    """A follower writes entries 1-3 of epoch 1; before that write lands, a leader of epoch 2
    cuts them after 1. Once the first write lands the disk holds 1-3, but the log agrees with
    it only through 1: that, not 3, is durable (until the second write lands too)."""
    def entry(index: int, epoch: int) -> LogEntry:
        return LogEntry(index=LogIndex(index), epoch=Epoch(epoch),
                        payload=Commands(commands=()), ts=Timestamp(index, epoch))

    def append(sender: str, epoch: int, prev: tuple[int, int], *entries: LogEntry
               ) -> MessageReceived:
        return MessageReceived(sender=NodeId(sender), message=Append(
            epoch=Epoch(epoch), prev_index=LogIndex(prev[0]), prev_epoch=Epoch(prev[1]),
            entries=entries, commit=LogIndex(0), seq=1))

    replica = Replica(node_id=NodeId("n2"), members=[NodeId(n) for n in ("n1", "n2", "n3")],
                      timing=Timing())
    replica.step(append("n1", 1, (0, 0), entry(1, 1), entry(2, 1), entry(3, 1)))
    first = replica.ready()
    replica.step(append("n3", 2, (1, 1), entry(2, 2)))
    second = replica.ready()
    assert second.persist is not None and second.persist.keep_upto == 1
    replica.advance(first)
    assert replica._durable_upto == 1
    replica.advance(second)
    assert replica._durable_upto == 2
