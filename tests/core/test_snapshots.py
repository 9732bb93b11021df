"""Compaction and snapshots: a node forgets applied entries; whoever needs them gets the ledger.

Three ways a snapshot is needed: a follower behind the leader's compaction point, a follower
whose conflicting tail hides behind it, and a recovering leader whose fetch source compacted
what it asked for. In every case the ledgers converge and no applied entry differs. Snapshots
are streamed in parts: lost, duplicated or reordered parts, a sender replaced halfway, a
receiver that restarts halfway -- each still ends in one whole install.
"""

import random
from dataclasses import replace

import msgspec

from quorapay.core.compaction import CompactionPolicy
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived
from quorapay.core.ledger import Delta, Ledger, row_size, transfer_row
from quorapay.core.log import Log
from quorapay.core.messages import Append, AppendAck, Fetch, SnapshotAck, SnapshotChunk
from quorapay.core.ready import LeadershipEnded
from quorapay.core.replica import Role
from quorapay.core.snapshot_stream import encoded_size
from quorapay.core.timing import Timing
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex, NodeId
from tests.core.harness import InFlight, ReplicaCluster, account, transfer


def elect(cluster: ReplicaCluster, node: str = "n1", epoch: int = 1) -> None:
    cluster.grant(node, epoch)
    cluster.stabilize()
    assert cluster[node].serving


def pay(cluster: ReplicaCluster, leader: str, count: int, prefix: str = "t") -> None:
    """Open accounts once, then `count` transfers as separate entries."""
    if "bank" not in cluster.nodes[NodeId(leader)].ledger.accounts:
        cluster.propose(leader, account("bank", issuer=True), account("alice"))
    for i in range(count):
        cluster.propose(leader, transfer(f"{prefix}{i}", "bank", "alice", 1))
        cluster.deliver_all()


def converged(cluster: ReplicaCluster, *nodes: str) -> None:
    digests = {n: cluster.nodes[NodeId(n)].ledger.digest() for n in nodes}
    applied = {n: cluster[n].applied_index for n in nodes}
    assert len(set(applied.values())) == 1, applied
    assert len(set(digests.values())) == 1, digests
    cluster.check_safety()


def snapshots_sent(cluster: ReplicaCluster, sent: list[InFlight]) -> int:
    """Snapshot streams begun (their first parts sent)."""
    return sum(isinstance(m.message, SnapshotChunk) and m.message.seq == 0 for m in sent)


def is_part(msg: InFlight) -> bool:
    return isinstance(msg.message, SnapshotChunk)


def deliver_recording(cluster: ReplicaCluster, ticks: int = 10) -> list[InFlight]:
    """stabilize(), keeping what was delivered."""
    seen: list[InFlight] = []
    for round_ in range(ticks + 1):
        if round_:
            cluster.tick()
        while (msg := cluster.deliver_one()) is not None:
            seen.append(msg)
    return seen


def test_compaction_forgets_applied_entries_and_a_restart_keeps_the_ledger() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 5)
    cluster.stabilize()
    before = cluster.nodes[NodeId("n1")].ledger.digest()
    applied = cluster["n1"].applied_index
    cluster.compact("n1", 4)
    assert cluster["n1"].log.start == 4
    assert cluster.nodes[NodeId("n1")].disk.log[0].index == 5
    cluster.compact("n1", 10_000)  # never past the applied index
    assert cluster["n1"].log.start == applied
    cluster.crash("n1")
    cluster.restart("n1")
    assert cluster["n1"].log.start == applied and cluster["n1"].applied_index == applied
    assert cluster.nodes[NodeId("n1")].ledger.digest() == before


def behind_the_compaction_point() -> ReplicaCluster:
    """n3 was down while n1 and n2 applied 8 transfers and compacted them; it is back."""
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.crash("n3")
    pay(cluster, "n1", 8)
    cluster.stabilize()
    for node in ("n1", "n2"):
        cluster.compact(node, cluster[node].applied_index)
    cluster.restart("n3")
    return cluster


def test_a_follower_behind_the_compaction_point_catches_up_from_a_snapshot() -> None:
    cluster = behind_the_compaction_point()
    sent = deliver_recording(cluster)
    assert snapshots_sent(cluster, sent) >= 1
    assert cluster.nodes[NodeId("n3")].disk.base_index > 0  # it installed, not replayed
    pay(cluster, "n1", 3, prefix="after")
    cluster.stabilize()
    converged(cluster, "n1", "n2", "n3")
    assert cluster.nodes[NodeId("n3")].ledger.accounts["alice"].balance == 11


def test_a_lost_snapshot_is_sent_again() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.crash("n3")
    pay(cluster, "n1", 4)
    cluster.stabilize()
    cluster.compact("n1", cluster["n1"].applied_index)
    cluster.restart("n3")
    lost: list[InFlight] = []

    def drop_first_snapshot(msg: InFlight) -> bool:
        if is_part(msg) and not lost:
            lost.append(msg)
            return True
        return False

    for _ in range(cluster.timing.snapshot_retry_ticks + 5):
        cluster.tick()
        cluster.deliver_all(drop=drop_first_snapshot)
    assert lost, "a snapshot was sent"
    cluster.stabilize()
    converged(cluster, "n1", "n2", "n3")


def test_a_conflicting_tail_behind_the_compaction_point_is_replaced() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 2)
    cluster.stabilize()
    cluster.isolate("n1")  # n1 keeps leading epoch 1 for a while: its new entries never commit
    pay(cluster, "n1", 3, prefix="lost")
    cluster.crash("n1")
    cluster.heal()
    elect(cluster, "n2", 2)
    pay(cluster, "n2", 6, prefix="new")
    cluster.stabilize()
    for node in ("n2", "n3"):
        cluster.compact(node, cluster[node].applied_index)
    cluster.restart("n1")
    cluster.stabilize(ticks=20)
    converged(cluster, "n1", "n2", "n3")
    assert cluster.nodes[NodeId("n1")].disk.base_index > 0  # installed over its stale tail
    ledger = cluster.nodes[NodeId("n1")].ledger
    assert not any(str(t).startswith("lost") for t in ledger.transfers)
    assert ledger.accounts["alice"].balance == 8


def test_a_recovering_leader_installs_its_fetch_sources_snapshot() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.crash("n3")
    pay(cluster, "n1", 6)
    cluster.stabilize()
    cluster.crash("n1")
    cluster.compact("n2", cluster["n2"].applied_index)
    cluster.restart("n3")  # behind by everything; n2, the only other live node, compacted
    cluster.grant("n3", 2)
    sent = deliver_recording(cluster, ticks=5)
    assert any(is_part(m) and m.src == "n2" for m in sent)
    assert cluster["n3"].role is Role.LEADER and cluster["n3"].serving
    pay(cluster, "n3", 2, prefix="new")
    cluster.restart("n1")
    cluster.stabilize(ticks=20)
    converged(cluster, "n1", "n2", "n3")
    assert cluster.nodes[NodeId("n3")].ledger.accounts["alice"].balance == 8


def test_an_append_below_the_compaction_point_is_acknowledged_from_the_start() -> None:
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 5)
    cluster.stabilize()
    cluster.compact("n2", cluster["n2"].applied_index)
    start = cluster["n2"].log.start
    leader_log = cluster["n1"].log
    cluster.network.clear()
    cluster.step("n2", MessageReceived(sender=NodeId("n1"), message=Append(
        epoch=Epoch(1), prev_index=LogIndex(1), prev_epoch=Epoch(1),
        entries=leader_log.slice(2, start), commit=cluster["n1"].commit_index, seq=0)))
    replies = [m.message for m in cluster.network if m.dst == "n1"]
    assert replies == [AppendAck(epoch=Epoch(1), match_index=start, seq=0)]


def entries_of(sizes: list[int], start: int = 0) -> Log:
    """A log after `start` whose entries carry these numbers of commands (weigh one more)."""
    return Log([LogEntry(index=LogIndex(start + i), epoch=Epoch(1), payload=Commands(
        commands=tuple(transfer(f"t{start + i}-{k}", "a", "b", 1) for k in range(size))))
        for i, size in enumerate(sizes, 1)], start=LogIndex(start), start_epoch=Epoch(1))


def test_compaction_policy_keeps_a_tail_and_waits_for_enough_entries() -> None:
    policy = CompactionPolicy(every=10, retain=3)
    assert policy.upto(entries_of([0] * 30), LogIndex(12)) is None
    assert policy.upto(entries_of([0] * 30), LogIndex(13)) == 10
    assert policy.upto(entries_of([0] * 30, start=10), LogIndex(22)) is None


def test_compaction_policy_bounds_the_commands_the_log_holds() -> None:
    policy = CompactionPolicy(every=1000, retain=3, max_commands=100)
    log = entries_of([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], start=5)  # entries 6..16, weight 10
    assert log.weight_upto(LogIndex(15)) == 100 and log.weight_upto(LogIndex(5)) == 0
    assert policy.upto(log, LogIndex(15)) is None  # applied through 15: 100, not above
    assert policy.upto(log, LogIndex(16)) == 13  # keeps the last 3 (at most 50 commands)
    assert log.start_within(LogIndex(16), 50) == 11 and log.start_within(LogIndex(16), 500) == 5
    big = entries_of([200, 1, 1])  # one entry above the bound: compacted, none kept
    assert CompactionPolicy(every=1000, retain=10, max_commands=100).upto(
        big, LogIndex(1)) == 1
    big.compact(LogIndex(1))
    assert big.weight_upto(LogIndex(3)) == 4 and big.start_within(LogIndex(3), 2) == 2


def test_a_follower_that_turns_out_to_hold_the_start_point_is_replicated_to_again() -> None:
    # Regression (sim seed 103): the leader asked for a snapshot, the follower acknowledged a
    # heartbeat at the compaction point (below the snapshot's index) and entries flowed again;
    # when those were lost, the pending snapshot kept retransmission off for good.
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 2)
    cluster.stabilize()
    for i in range(3):  # n3 gets these entries but its acknowledgements are lost
        cluster.propose("n1", transfer(f"unacked{i}", "bank", "alice", 1))
        cluster.deliver_all(drop=lambda m: m.src == "n3")
    for i in range(2):  # these never reach n3
        cluster.propose("n1", transfer(f"missed{i}", "bank", "alice", 1))
        cluster.deliver_all(drop=lambda m: "n3" in (m.src, m.dst))
    cluster.compact("n1", cluster["n1"].applied_index - 2)  # n3's last entry: the start point

    def catch_up(msg: InFlight) -> bool:
        return msg.dst == "n3" and (is_part(msg) or (
            isinstance(msg.message, Append) and bool(msg.message.entries)))

    for _ in range(cluster.timing.retransmit_ticks + 1):  # stall: rewind below the start
        cluster.tick()
        cluster.deliver_all(drop=lambda m: m.src == "n3" or catch_up(m))
    assert cluster["n1"]._progress[NodeId("n3")].snapshot_index is not None
    for _ in range(cluster.timing.heartbeat_ticks + 1):  # a heartbeat at the start is acked
        cluster.tick()
        cluster.deliver_all(drop=catch_up)
    pay(cluster, "n1", 3, prefix="more")
    cluster.stabilize(ticks=cluster.timing.snapshot_retry_ticks + 10)
    converged(cluster, "n1", "n2", "n3")


def test_a_fetch_answered_after_the_asker_moved_to_a_newer_epoch_sends_no_snapshot() -> None:
    """A Fetch of epoch 1 and, in the same batch, the same node's Append of epoch 2 committing
    an entry of epoch 2: the snapshot the Fetch asked for would be of an entry newer than its
    epoch (found by the long simulation run, seed 38176: the node crashed building it)."""
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 3)
    cluster.compact("n2", cluster["n2"].applied_index)
    last = cluster["n2"].last_index
    entry = LogEntry(index=LogIndex(last + 1), epoch=Epoch(2), payload=Commands(commands=()))
    cluster.step("n2",
                 MessageReceived(sender=NodeId("n1"), message=Fetch(epoch=Epoch(1),
                                                                    from_index=LogIndex(1))),
                 MessageReceived(sender=NodeId("n1"), message=Append(
                     epoch=Epoch(2), prev_index=LogIndex(last), prev_epoch=Epoch(1),
                     entries=(entry,), commit=LogIndex(last + 1), seq=1)))
    assert cluster["n2"].applied_index == last + 1  # applied the epoch-2 entry, did not crash
    assert not any(is_part(m) and m.src == "n2" for m in cluster.network)


def test_a_recovering_leader_that_can_get_nothing_gives_leadership_up() -> None:
    """Its only source compacted and its snapshot never arrives (too large to send, say): after
    the recovery-stall time the candidate gives up and relinquishes, so that another node, one
    holding the log, can lead -- instead of a cluster stuck with a leader that never serves."""
    cluster = ReplicaCluster()
    elect(cluster)
    cluster.crash("n3")
    pay(cluster, "n1", 6)
    cluster.stabilize()
    cluster.crash("n1")
    cluster.compact("n2", cluster["n2"].applied_index)
    cluster.restart("n3")
    cluster.grant("n3", 2)
    stall = cluster.timing.recovery_stall_ticks
    for _ in range(stall - 1):
        cluster.tick()
        cluster.deliver_all(drop=is_part)
    assert cluster["n3"].role is Role.RECOVERING
    cluster.tick()
    cluster.deliver_all(drop=is_part)
    assert cluster["n3"].role is Role.FOLLOWER
    ended = [o for o in cluster.nodes[NodeId("n3")].outcomes if isinstance(o, LeadershipEnded)]
    assert ended and ended[-1].relinquish and "recovery-stall" in ended[-1].reason


SMALL_PARTS = replace(Timing(), snapshot_chunk_rows=2, snapshot_window=2)


def far_behind(timing: Timing = SMALL_PARTS, transfers: int = 12) -> ReplicaCluster:
    """n3 was down while n1 and n2 decided `transfers` transfers and compacted them."""
    cluster = ReplicaCluster(timing=timing)
    elect(cluster)
    cluster.crash("n3")
    pay(cluster, "n1", transfers)
    cluster.stabilize()
    for node in ("n1", "n2"):
        cluster.compact(node, cluster[node].applied_index)
    cluster.restart("n3")
    return cluster


def parts_of(sent: list[InFlight]) -> list[int]:
    return [m.message.seq for m in sent if isinstance(m.message, SnapshotChunk)]


def stream_until(cluster: ReplicaCluster, parts: int) -> None:
    """Tick and deliver until `parts` parts of a snapshot have been delivered."""
    sent: list[InFlight] = []
    for _ in range(50):
        while len(parts_of(sent)) < parts and (msg := cluster.deliver_one()) is not None:
            sent.append(msg)
        if len(parts_of(sent)) >= parts:
            return
        cluster.tick()
    raise AssertionError(f"only {len(parts_of(sent))} parts were delivered")


def test_a_snapshot_is_streamed_in_bounded_parts_and_installed_once_whole() -> None:
    cluster = far_behind()
    sent = deliver_recording(cluster)
    parts = [m.message for m in sent if isinstance(m.message, SnapshotChunk)]
    assert len(parts) >= 7  # 2 accounts, 12 transfers: 2 rows a part
    assert all(len(p.accounts) + len(p.transfers) <= 2 for p in parts)
    assert parts[-1].last and parts[-1].transfer_total == 12 and parts[-1].account_total == 2
    assert cluster.nodes[NodeId("n3")].state.receiving.installed == 1
    converged(cluster, "n1", "n2", "n3")


def test_lost_duplicated_and_reordered_parts_still_make_one_whole_snapshot() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        cluster = far_behind()
        for _ in range(200):
            if cluster["n3"].applied_index == cluster["n1"].applied_index:
                break
            cluster.tick()
            moved = 0
            while cluster.network and moved < 500:
                moved += 1
                position = rng.randrange(len(cluster.network))  # any order
                if is_part(cluster.network[position]) and rng.random() < 0.2:
                    cluster.duplicate_at(position)
                if rng.random() < 0.15 and isinstance(
                        cluster.network[position].message, SnapshotChunk | SnapshotAck):
                    del cluster.network[position]  # lost
                    continue
                cluster.deliver_at(position)
        converged(cluster, "n1", "n2", "n3")


def test_a_stream_cut_off_resumes_from_the_receivers_acknowledgement() -> None:
    cluster = far_behind()
    stream_until(cluster, 4)
    cluster.cut("n1", "n3")  # the link breaks halfway
    cluster.tick(3)
    cluster.deliver_all()
    cluster.heal()
    resumed = deliver_recording(cluster, ticks=cluster.timing.snapshot_retry_ticks + 10)
    assert 0 not in parts_of(resumed)  # not from the start: from what n3 holds
    assert cluster.nodes[NodeId("n1")].state.sending.resumed >= 1
    converged(cluster, "n1", "n2", "n3")


def test_a_new_leader_streams_its_own_snapshot_over_a_half_received_one() -> None:
    cluster = far_behind()
    stream_until(cluster, 3)
    cluster.crash("n1")
    cluster.network.clear()
    elect(cluster, "n2", 2)
    pay(cluster, "n2", 2, prefix="new")
    cluster.stabilize(ticks=20)
    assert cluster.nodes[NodeId("n3")].disk.base_index > 0
    cluster.restart("n1")
    cluster.stabilize(ticks=20)
    converged(cluster, "n1", "n2", "n3")


def test_a_receiver_that_restarts_halfway_is_sent_the_snapshot_again_from_the_start() -> None:
    cluster = far_behind()
    stream_until(cluster, 4)
    cluster.crash("n3")
    cluster.restart("n3")
    again = deliver_recording(cluster, ticks=cluster.timing.snapshot_retry_ticks + 10)
    assert 0 in parts_of(again)
    converged(cluster, "n1", "n2", "n3")


def test_an_acknowledgement_of_another_snapshot_changes_nothing() -> None:
    cluster = far_behind()
    cluster.deliver_all()  # a few parts on their way
    sender = cluster.nodes[NodeId("n1")].state.sending
    before = dict(sender.active)
    cluster.step("n1", MessageReceived(sender=NodeId("n3"), message=SnapshotAck(
        epoch=Epoch(1), index=LogIndex(999), stream=1, next_seq=50)))
    for stream in (0, 2):  # the right snapshot, another stream of it
        cluster.step("n1", MessageReceived(sender=NodeId("n3"), message=SnapshotAck(
            epoch=Epoch(1), index=LogIndex(cluster["n1"].applied_index), stream=stream,
            next_seq=50)))
    assert sender.active == before


def test_the_estimated_export_size_is_near_the_real_one() -> None:
    """Kept as rows are added, whatever their ids: short first, then the longest allowed."""
    ledger = Ledger()
    long = "x" * 60
    commands = [account("bank", issuer=True), account(f"{long}-a"), account(f"{long}-b")]
    commands += [transfer(f"t{i}", "bank", f"{long}-a", 1 + i * 1000) for i in range(300)]
    commands += [transfer(f"{long}{i:04}", "bank", f"{long}-b", 2**40) for i in range(300)]
    for index in range(0, len(commands), 50):
        ledger.apply(LogEntry(index=LogIndex(index + 1), epoch=Epoch(1), ts=Timestamp(2**41, 3),
                              payload=Commands(commands=tuple(commands[index:index + 50]))),
                     Delta())
    real = len(msgspec.msgpack.encode(ledger.export()))
    assert real - 64 <= ledger.estimated_export_bytes() <= 1.05 * real
    assert Ledger.from_state(ledger.export()).estimated_export_bytes() == \
        ledger.estimated_export_bytes()


def test_a_part_is_bounded_even_when_most_transfers_are_not_yet_durable() -> None:
    """Transfers decided but not yet known durable are copied when the snapshot begins; they
    go out in parts of the same bound as those read from the store."""
    ledger = Ledger()
    ledger.apply(LogEntry(index=LogIndex(1), epoch=Epoch(1), payload=Commands(commands=(
        account("bank", issuer=True), account("alice"),
        *(transfer(f"t{i:03}", "bank", "alice", 1) for i in range(50))))), Delta())
    source = ledger.snapshot_source()
    parts, after, last = [], None, False
    while not last:
        records, last = source.read(after, 7)
        parts.append(records)
        after = records[-1].id if records else after
    assert all(len(p) <= 7 for p in parts) and sum(map(len, parts)) == 50
    assert [r.id for p in parts for r in p] == [f"t{i:03}" for i in range(50)]


def test_at_most_a_window_of_parts_is_unacknowledged() -> None:
    cluster = far_behind(transfers=40)
    sent = acked = most = 0
    for _ in range(40):
        cluster.tick()
        while (msg := cluster.deliver_one()) is not None:
            if isinstance(msg.message, SnapshotChunk) and msg.message.seq >= sent:
                sent = msg.message.seq + 1
            elif isinstance(msg.message, SnapshotAck):
                acked = max(acked, msg.message.next_seq)
            most = max(most, sent - acked)
    assert sent > 10 and most <= SMALL_PARTS.snapshot_window
    converged(cluster, "n1", "n2", "n3")


def test_a_parts_size_is_counted_as_each_row_encodes() -> None:
    ledger = Ledger()
    long = "x" * 60
    ledger.apply(LogEntry(index=LogIndex(2**20), epoch=Epoch(1), ts=Timestamp(2**41, 300),
                          payload=Commands(commands=(
                              account("bank", issuer=True), account(f"{long}-a"),
                              *(transfer(f"t{i}", "bank", f"{long}-a", 1 + i * 99_999)
                                for i in range(40))))), Delta())
    rows = tuple(map(transfer_row, ledger.records()))
    for count in (0, 1, 15, 16, 40):
        assert encoded_size(rows[:count]) == sum(map(row_size, rows[:count]))


def test_a_rate_limit_spreads_the_parts_over_ticks() -> None:
    """With `snapshot_bytes_per_tick`, a stream sends about that much a tick, however fast the
    receiver acknowledges; the snapshot still arrives whole."""
    paced = replace(SMALL_PARTS, snapshot_window=100, snapshot_bytes_per_tick=60)
    cluster = far_behind(timing=paced, transfers=30)
    parts_per_tick: list[int] = []
    for _ in range(200):
        cluster.tick()
        delivered = 0
        while (msg := cluster.deliver_one()) is not None:
            delivered += is_part(msg)
        parts_per_tick.append(delivered)
        if cluster["n3"].applied_index == cluster["n1"].applied_index:
            break
    assert max(parts_per_tick) <= 2  # a part is about 30 to 70 bytes: one, or two small ones
    assert sum(parts_per_tick) >= 15
    converged(cluster, "n1", "n2", "n3")


def test_a_stream_given_up_and_begun_again_at_the_same_index_completes() -> None:
    """Regression (found in review): the sender gave its stream up (nothing heard for four
    resend times) and the replica asked again at the same index (an idle cluster); the
    receiver still held the first stream's parts and answered the new one with where the old
    one had got to, a part the new stream could not build -- and it stalled for good. A new
    stream now has a number of its own: the receiver starts it over."""
    cluster = far_behind()
    stream_until(cluster, 6)
    cluster.cut("n1", "n3")
    sender = cluster.nodes[NodeId("n1")].state.sending
    for _ in range(5 * cluster.timing.snapshot_retry_ticks):
        cluster.tick()
        cluster.deliver_all()
    assert sender.started >= 2 or not sender.active  # given up (and maybe begun again)
    cluster.heal()
    cluster.stabilize(ticks=6 * cluster.timing.snapshot_retry_ticks)
    converged(cluster, "n1", "n2", "n3")
