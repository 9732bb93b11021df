"""SQLite storage: round trips, identity, corruption, and a crash between any two steps."""

import sqlite3
from pathlib import Path

import msgspec
import pytest

from quorapay.core.digest import replay
from quorapay.core.executor import Executor
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import CompactionRequested, LeadershipGranted, MessageReceived, Ticked
from quorapay.core.ledger import (
    Delta,
    Ledger,
    LedgerState,
    StagedSums,
    row_size,
    transfer_row,
    transfer_row_hash,
)
from quorapay.core.messages import Append, InstallSnapshot
from quorapay.core.node_state import NodeState, Write, WriteBatch
from quorapay.core.ready import Persist
from quorapay.core.replica import Replica
from quorapay.core.snapshot_stream import StagedChunk
from quorapay.core.timing import Timing
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex, NodeId, TransferId
from quorapay.node.storage import Connection, StorageError, Store, record_crc
from tests.core.harness import account, lone_ports, transfer

ME = NodeId("solo")


def open_store(path: Path) -> Store:
    return Store(path / "node.db", cluster="test", node_id=ME)


def boot(store: Store) -> tuple[Replica, object]:
    restored = store.load()
    replica = Replica(node_id=ME, members=[ME], timing=Timing(), log=restored.log,
                      promised_epoch=restored.promised_epoch, applied_index=restored.applied_index,
                      snapshot_index=restored.snapshot_index,
                      snapshot_epoch=restored.snapshot_epoch)
    return replica, restored.ledger


def settled(inputs: list) -> list:
    """`inputs`, then the ticks after which applied rows held for a log write go alone."""
    return [*inputs, *[[Ticked()]] * Timing().apply_hold_ticks]


def workload() -> list:
    """Inputs for a one-node cluster: leadership, accounts, then transfers in batches."""
    inputs = [[LeadershipGranted(epoch=Epoch(1))],
              [Write(key=1, commands=(account("bank", issuer=True), account("alice"),
                                      account("bob")))]]
    for i in range(6):
        inputs.append([Write(key=10 + i, commands=(
            transfer(f"d{i}", "bank", "alice", 100), transfer(f"t{i}", "alice", "bob", 30)))])
        if i == 3:
            inputs.append([CompactionRequested(upto=LogIndex(4))])
    return settled(inputs)


def run(store: Store, replica: Replica, ledger, inputs, *,
        crash_at: tuple[int, int] | None = None, after_write=None) -> int | None:
    """Drive the replica as the node does, through the production executor. With
    crash_at=(w, k), die after k statements of write w and return the number of the input
    batch that was being handled; else None."""
    executor = Executor(NodeState(replica, ledger), lone_ports())
    writes = 0
    for number, batch in enumerate(inputs):
        executor.step(batch)
        while batches := executor.pending():
            for write in batches:
                writes += 1
                if crash_at and writes == crash_at[0]:
                    store._db.execute("BEGIN IMMEDIATE")
                    steps = store.write_steps(write)
                    for _ in range(crash_at[1]):
                        next(steps, None)
                    return number  # the process dies here: the transaction never commits
                store.write(write)
                if after_write:
                    after_write()
                executor.persisted()
    return None


def snapshot(store: Store) -> tuple:
    r = store.load()
    return (r.promised_epoch, [(e.index, e.epoch, e.payload) for e in r.log], r.applied_index,
            r.ledger.digest(), r.snapshot_index, r.snapshot_epoch)


def outcomes(store: Store) -> tuple[dict, dict]:
    """Balances and transfer outcomes (not the log positions, which retries may shift)."""
    ledger = store.load().ledger
    return ({a.id: a.balance for a in ledger.accounts.values()},
            {t.transfer.id: t.status for t in ledger.transfers.values()})


def test_round_trip_and_replay_equivalence(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    restored = store.load()
    assert restored.ledger.digest() == ledger.digest()  # (read through the open store)
    store.close()
    assert restored.applied_index == replica.applied_index == replica.last_index
    assert restored.ledger.accounts["bob"].balance == 6 * 30
    assert restored.ledger.totals() == {"USD": 0}
    assert restored.snapshot_index == 4 and restored.log[0].index == 5  # compacted up to 4


def test_a_crash_between_any_two_steps_recovers_a_committed_state(tmp_path: Path) -> None:
    reference = open_store(tmp_path / "ref")
    states = [snapshot(reference)]  # every durable state of the crash-free run, write by write
    replica, ledger = boot(reference)
    run(reference, replica, ledger, workload(), after_write=lambda: states.append(
        snapshot(reference)))
    final_ledger = outcomes(reference)
    crashes = 0
    for write in range(1, len(states)):
        for step in range(8):
            path = tmp_path / f"w{write}s{step}"
            store = open_store(path)
            replica, ledger = boot(store)
            crashed_in = run(store, replica, ledger, workload(), crash_at=(write, step))
            assert crashed_in is not None
            crashes += 1
            store.close()  # the process is gone: SQLite rolls the open transaction back
            recovered = open_store(path)
            assert snapshot(recovered) in states, f"write {write}, step {step}: torn state"
            # It restarts, ZooKeeper grants it a new epoch, clients retry what was lost.
            replica, ledger = boot(recovered)
            retry = settled([[LeadershipGranted(epoch=Epoch(2))],
                             *workload()[max(crashed_in, 1):]])
            run(recovered, replica, ledger, retry)
            assert outcomes(recovered) == final_ledger
            recovered.close()
    reference.close()
    assert crashes >= 8 * 8


def installed(store: Store, index: int, epoch: int) -> WriteBatch:
    """A batch installing another node's ledger at (index, epoch), then one entry after it."""
    other = Ledger()
    other.apply(LogEntry(index=LogIndex(1), epoch=Epoch(epoch), payload=Commands(commands=(
        account("carol", issuer=True), account("dave")))), Delta())
    other.apply(LogEntry(index=LogIndex(2), epoch=Epoch(epoch), payload=Commands(commands=(
        transfer("x1", "carol", "dave", 7),))), Delta())
    snapshot = InstallSnapshot(epoch=Epoch(epoch), index=LogIndex(index),
                               last_epoch=Epoch(epoch), state=other.export())
    after = LogEntry(index=LogIndex(index + 1), epoch=Epoch(epoch),
                     payload=Commands(commands=()))
    return WriteBatch(persist=Persist(keep_upto=LogIndex(index), entries=(after,),
                                      promised_epoch=Epoch(epoch), install=snapshot),
                      applied_index=LogIndex(index))


def crash_inside_then_write(store: Store, batch: WriteBatch) -> None:
    """A crash after each step of writing `batch` leaves the store as it was; then write it."""
    before = snapshot(store)
    for step in range(5):
        store._db.execute("BEGIN IMMEDIATE")
        steps = store.write_steps(batch)
        for _ in range(step):
            next(steps, None)
        store._db.execute("ROLLBACK")
        assert snapshot(store) == before
    store.write(batch)


def test_installing_a_snapshot_replaces_log_and_ledger_at_once(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    batch = installed(store, 50, 3)
    crash_inside_then_write(store, batch)
    store.close()
    store = open_store(tmp_path)
    restored = store.load()
    assert (restored.snapshot_index, restored.snapshot_epoch) == (50, 3)
    assert [e.index for e in restored.log] == [51]
    assert restored.applied_index == 50 and restored.promised_epoch == 3
    assert set(restored.ledger.accounts) == {"carol", "dave"}
    assert restored.ledger.accounts["dave"].balance == 7
    replica, _ = boot(store)  # and a replica starts from it
    assert replica.log.start == 50 and replica.last_index == 51
    store.close()


def staged_install(store: Store, index: int, epoch: int, parts: int = 3) -> list[WriteBatch]:
    """The batches of a streamed snapshot: its transfers staged in `parts` parts, then the
    install that swaps them in (with one entry after it)."""
    other = Ledger()
    commands = (account("carol", issuer=True), account("dave"),
                *(transfer(f"x{i:02}", "carol", "dave", 1 + i) for i in range(9)))
    other.apply(LogEntry(index=LogIndex(1), epoch=Epoch(epoch),
                         payload=Commands(commands=commands)), Delta())
    rows = list(map(transfer_row, other.records()))
    size = -(-len(rows) // parts)
    batches = [WriteBatch(stage=StagedChunk(first=part == 0, transfers=tuple(
        rows[part * size:(part + 1) * size]))) for part in range(parts)]
    sums = StagedSums(count=len(rows), size=sum(map(row_size, rows)),
                      digest=sum(map(transfer_row_hash, rows)) % 2**256)
    state = other.export()
    snapshot = InstallSnapshot(epoch=Epoch(epoch), index=LogIndex(index),
                               last_epoch=Epoch(epoch), staged=sums,
                               state=LedgerState(accounts=state.accounts, transfers=()))
    after = LogEntry(index=LogIndex(index + 1), epoch=Epoch(epoch),
                     payload=Commands(commands=()))
    batches.append(WriteBatch(persist=Persist(keep_upto=LogIndex(index), entries=(after,),
                                              promised_epoch=Epoch(epoch), install=snapshot),
                              applied_index=LogIndex(index)))
    return batches


def test_a_streamed_snapshot_is_staged_then_swapped_in_whole(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    before = snapshot(store)
    *parts, install = staged_install(store, 50, 3)
    for part in parts:
        store.write(part)
    assert snapshot(store) == before  # staged beside the ledger, which is unchanged
    crash_inside_then_write(store, install)
    store.close()
    store = open_store(tmp_path)
    restored = store.load()
    assert (restored.snapshot_index, restored.applied_index) == (50, 50)
    assert set(restored.ledger.accounts) == {"carol", "dave"}
    assert restored.ledger.transfer_count == 9 and restored.ledger.transfer("x03") is not None
    assert restored.ledger.transfer("d0") is None  # the old ledger's transfers are gone
    assert restored.ledger.digest() == restored.ledger.recount_digest()
    store.close()


def test_a_snapshot_half_staged_when_the_node_stopped_is_discarded(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    first, *_ = staged_install(store, 50, 3)
    store.write(first)
    store.close()
    store = open_store(tmp_path)
    tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
    assert "transfers_staged" not in tables
    store.close()


def downgrade(path: Path, version: int) -> None:
    """Turn a data dir into what schema `version` wrote: accounts with allow_negative,
    transfers without flags, amount moved, pending id or timeout, no expiring table (3); no
    timestamps, checksums without them (2); no compaction markers (1)."""
    db = sqlite3.connect(path / "node.db")
    db.executescript("""
        ALTER TABLE accounts RENAME TO accounts_4;
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY, currency TEXT NOT NULL, allow_negative INTEGER NOT NULL,
            balance INTEGER NOT NULL, idx INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO accounts SELECT id, currency, 1 - flags, balance, idx FROM accounts_4;
        DROP TABLE accounts_4;
        ALTER TABLE transfers DROP COLUMN flags;
        ALTER TABLE transfers DROP COLUMN moved;
        ALTER TABLE transfers DROP COLUMN pending_id;
        ALTER TABLE transfers DROP COLUMN timeout_ms;
        DROP TABLE expiring;
        DELETE FROM meta WHERE key IN ('transfer_count', 'transfer_bytes', 'transfer_digest');""")
    if version == 3:
        db.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
        db.commit()
        db.close()
        return
    for table in ("log", "transfers"):
        db.execute(f"ALTER TABLE {table} DROP COLUMN wall_ms")
        db.execute(f"ALTER TABLE {table} DROP COLUMN logical")
    rows = db.execute("SELECT idx, epoch, payload FROM log").fetchall()
    db.executemany("UPDATE log SET crc = ? WHERE idx = ?",
                   [(record_crc(i, e, p), i) for i, e, p in rows])
    db.execute("DELETE FROM meta WHERE key IN ('snapshot_wall_ms', 'snapshot_logical', "
               "'transfer_count', 'transfer_bytes', 'transfer_digest')")
    if version == 1:
        db.execute("DELETE FROM meta WHERE key IN ('snapshot_index', 'snapshot_epoch')")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    db.commit()
    db.close()


def old_data_dir(tmp_path: Path, version: int) -> None:
    """A data dir after a short workload, as schema `version` wrote it."""
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, settled(workload()[:4]))
    store.close()
    downgrade(tmp_path, version)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_data_dir_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    old_data_dir(tmp_path, version)
    store = open_store(tmp_path)
    restored = store.load()
    assert restored.snapshot_index == 0 and restored.log[0].index == 1
    if version < 3:
        assert [e.ts for e in restored.log] == [Timestamp(0, e.index) for e in restored.log]
    assert restored.ledger.accounts["bank"].balance == -200
    assert restored.ledger.accounts["bank"].allow_negative
    assert not restored.ledger.accounts["alice"].allow_negative
    assert restored.ledger.transfers  # ... with their deciding entries' timestamps:
    assert restored.ledger.digest() == replay(restored.log).digest()
    store.close()
    store = open_store(tmp_path)
    assert store.load().log == restored.log  # and it stays upgraded
    store.close()


def test_a_corrupt_record_stops_the_upgrade_and_changes_nothing(tmp_path: Path) -> None:
    old_data_dir(tmp_path, 2)
    db = sqlite3.connect(tmp_path / "node.db")
    db.execute("UPDATE log SET crc = crc + 1 WHERE idx = 2")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="corrupt log record at index 2"):
        open_store(tmp_path)
    db = sqlite3.connect(tmp_path / "node.db")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (2,)
    db.close()


def test_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with pytest.raises(StorageError, match="belongs to node 'solo'"):
        Store(tmp_path / "node.db", cluster="test", node_id="other")


def test_corrupt_record_is_detected_by_checksum(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    store.close()
    db = sqlite3.connect(tmp_path / "node.db")
    db.execute("UPDATE log SET payload = CAST(X'00' || substr(payload, 2) AS BLOB) WHERE idx = 6")
    db.commit()
    db.close()
    store = open_store(tmp_path)
    with pytest.raises(StorageError, match="corrupt log record at index 6"):
        store.load()
    store.close()


def test_a_data_dir_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    with pytest.raises(StorageError, match="in use by another running node process"):
        open_store(tmp_path)
    first.close()
    open_store(tmp_path).close()  # released on close (and when the process dies)


def written_store(tmp_path: Path) -> Path:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    store.close()
    return tmp_path / "node.db"


def load_fails(tmp_path: Path) -> StorageError:
    """Opening and loading the store, and then reading every stored transfer (which start-up
    does not), fails with a StorageError (never a raw sqlite3 error)."""
    store = None
    try:
        store = open_store(tmp_path)
        list(store.load().ledger.records())
    except StorageError as exc:
        return exc
    finally:
        if store is not None:
            store.close()
    raise AssertionError("the damage went unnoticed")


def test_a_damaged_file_is_reported_as_such_naming_it(tmp_path: Path) -> None:
    path = written_store(tmp_path)
    data = bytearray(path.read_bytes())
    for i in range(4096, min(len(data), 3 * 4096)):  # pages 2 and 3: b-tree pages
        data[i] = (i * 7 + 3) & 0xFF
    path.write_bytes(data)
    failure = load_fails(tmp_path)
    assert "node.db" in str(failure)
    assert "damaged" in str(failure) or "corrupt" in str(failure)


@pytest.mark.parametrize(("statement", "problem"), [
    ("UPDATE meta SET value = 4611686018427387904 WHERE key = 'promised_epoch'",
     "promised_epoch"),
    ("UPDATE meta SET value = 'seven' WHERE key = 'applied_index'", "applied_index"),
    ("UPDATE meta SET value = 5 WHERE key = 'promised_to'", "promised_to"),
    ("UPDATE accounts SET balance = 9223372036854775807 WHERE id = 'bob'", "an account row"),
    ("UPDATE transfers SET status = 'stolen' WHERE id = 't1'", "corrupt transfer row"),
    ("UPDATE transfers SET idx = -3 WHERE id = 't1'", "transfer row 't1' is out of range"),
    ("UPDATE meta SET value = -1 WHERE key = 'transfer_count'", "transfer_count"),
    ("UPDATE log SET epoch = -1 WHERE idx = 6", "log record"),
])
def test_a_stored_value_out_of_its_range_is_refused(tmp_path: Path, statement: str,
                                                   problem: str) -> None:
    path = written_store(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute(statement)
    db.close()
    assert problem in str(load_fails(tmp_path))


def test_start_up_reads_no_transfer_and_the_ledger_reads_them_when_needed(
        tmp_path: Path) -> None:
    written_store(tmp_path)
    statements: list[str] = []

    def traced(path: Path) -> Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.set_trace_callback(statements.append)
        return db

    store = Store(tmp_path / "node.db", cluster="test", node_id=ME, connect=traced)
    restored = store.load()
    assert not [s for s in statements if "FROM transfers" in s]
    ledger = restored.ledger
    assert ledger.transfer_count == 12 and ledger.held_transfers == 0
    assert ledger.transfer(TransferId("t1")).status.value == "ok"  # read through the store
    assert ledger.transfer(TransferId("never")) is None
    real = len(msgspec.msgpack.encode(ledger.export()))
    assert real - 64 <= ledger.estimated_export_bytes() <= 1.05 * real
    assert ledger.digest() == ledger.recount_digest() == Ledger.from_state(
        ledger.export()).recount_digest()
    store.close()


def test_a_ledger_lets_go_of_the_transfers_its_store_holds(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())
    assert ledger.transfer_count == 12 and ledger.held_transfers == 0  # all on disk
    before = ledger.digest()
    retried = [[Write(key=99, commands=(transfer("t2", "alice", "bob", 30),
                                        transfer("t9", "alice", "bob", 30)))]]
    run(store, replica, ledger, settled(retried))
    assert ledger.transfer("t2").index < ledger.transfer("t9").index  # t2 decided once
    assert ledger.transfer_count == 13 and ledger.digest() != before
    assert ledger.digest() == store.load().ledger.digest() == ledger.recount_digest()
    store.close()


def test_an_upgrade_that_meets_a_damaged_transfer_refuses_every_time(tmp_path: Path) -> None:
    old_data_dir(tmp_path, 2)
    with sqlite3.connect(tmp_path / "node.db") as db:
        db.execute("UPDATE transfers SET status = 'stolen' WHERE id = 't1'")
    db.close()
    for _ in range(2):  # the schema upgrade landed; counting the transfers never did
        with pytest.raises(StorageError, match="corrupt transfer row"):
            open_store(tmp_path)


def test_a_data_dir_from_before_the_kept_transfer_sums_has_them_counted_once(
        tmp_path: Path) -> None:
    path = written_store(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE key IN ('transfer_bytes', 'transfer_digest')")
    db.close()
    store = open_store(tmp_path)
    ledger = store.load().ledger
    assert ledger.transfer_count == 12
    assert ledger.digest() == ledger.recount_digest() == Ledger.from_state(
        ledger.export()).recount_digest()
    real = len(msgspec.msgpack.encode(ledger.export()))
    assert real - 64 <= ledger.estimated_export_bytes() <= 1.05 * real
    store.close()


def test_a_seeded_node_promises_at_least_the_granted_epoch_and_never_less(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, workload())  # promised epoch 1 to itself
    assert store.raise_promise(7) == 7
    assert store.raise_promise(3) == 7  # never lowered
    restored = store.load()
    store.close()
    assert restored.promised_epoch == 7 and restored.promised_to is None
    replica = Replica(node_id=ME, members=[ME, NodeId("n2")], timing=Timing(),
                      log=restored.log, promised_epoch=restored.promised_epoch,
                      applied_index=restored.applied_index,
                      snapshot_index=restored.snapshot_index)
    replica.step(MessageReceived(sender=NodeId("n2"), message=Append(
        epoch=Epoch(6), prev_index=LogIndex(0), prev_epoch=Epoch(0), entries=(), commit=LogIndex(0),
        seq=1)))
    assert replica.leader is None  # a deposed leader of epoch 6 is not followed


def test_snapshot_parts_from_the_store_and_memory_are_bounded_and_whole(tmp_path: Path) -> None:
    """Half the transfers on disk, half decided since (held in memory, not yet durable): the
    parts of a snapshot are each within the bound, in id order, and together all of them."""
    store = open_store(tmp_path)
    delta = Delta()
    entry = LogEntry(index=LogIndex(1), epoch=Epoch(1), payload=Commands(commands=(
        account("bank", issuer=True), account("alice"),
        *(transfer(f"t{i:02}", "bank", "alice", 1) for i in range(0, 40, 2)))))
    Ledger().apply(entry, delta)
    store.write(WriteBatch(persist=Persist(keep_upto=LogIndex(0), entries=(entry,),
                                           promised_epoch=Epoch(1)),
                           delta=delta, applied_index=LogIndex(1)))
    ledger = store.load().ledger
    ledger.apply(LogEntry(index=LogIndex(2), epoch=Epoch(1), payload=Commands(commands=tuple(
        transfer(f"t{i:02}", "bank", "alice", 1) for i in range(1, 40, 2)))), Delta())
    assert ledger.held_transfers == 20
    source = ledger.snapshot_source()
    ids, after, last = [], None, False
    while not last:
        records, last = source.read(after, 3)
        assert 0 < len(records) <= 3 or last
        ids += [r.id for r in records]
        after = records[-1].id if records else after
    assert ids == [f"t{i:02}" for i in range(40)]
    store.close()
