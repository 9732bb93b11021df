"""The simulated disk under the real store: what a crash keeps, and the faults it injects."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from quorapay.core.node_state import WriteBatch
from quorapay.core.ready import Persist
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex
from quorapay.node.storage import StorageError, Store
from quorapay.sim.disk import SimDisk
from tests.core.harness import transfer

PATH = Path("/n1/node.db")


def store_on(disk: SimDisk) -> Store:
    return Store(PATH, cluster="sim", node_id="n1", connect=disk.connect, lock=False)


def entry(i: int) -> WriteBatch:
    e = LogEntry(index=LogIndex(i), epoch=Epoch(1),
                 payload=Commands(commands=(transfer(f"t{i}", "a", "b", 1),)))
    return WriteBatch(persist=Persist(keep_upto=LogIndex(i - 1), entries=(e,),
                                      promised_epoch=Epoch(1) if i == 1 else None))


def test_a_crash_keeps_every_completed_write_whatever_it_loses() -> None:
    for seed in range(20):
        disk = SimDisk("n1")
        store = store_on(disk)
        for i in range(1, 40):
            store.write(entry(i))
        disk.crash(random.Random(seed))
        restored = store_on(disk).load()
        assert [e.index for e in restored.log] == list(range(1, 40))
        assert restored.promised_epoch == 1


def test_unsynced_writes_are_lost_in_any_subset_and_sqlite_copes() -> None:
    """With synchronous=OFF nothing is fsynced: a crash loses some suffix of the batches, but
    what survives is always a prefix -- never a torn or out-of-order log."""
    lost = 0
    for seed in range(20):
        disk = SimDisk("n1")
        store = store_on(disk)
        store._db.execute("PRAGMA synchronous=OFF")
        for i in range(1, 40):
            store.write(entry(i))
        disk.crash(random.Random(seed))
        indexes = [e.index for e in store_on(disk).load().log]
        assert indexes == list(range(1, len(indexes) + 1))
        lost += len(indexes) < 39
    assert lost > 0


def test_a_process_that_dies_inside_a_write_keeps_the_state_before_or_after_it() -> None:
    for operations in range(0, 5):  # a one-entry batch makes 6 file operations
        disk = SimDisk("n1")
        store = store_on(disk)
        for i in range(1, 6):
            store.write(entry(i))
        disk.die_after(operations)
        with pytest.raises(StorageError):
            store.write(entry(6))
        assert disk.died
        disk.crash(random.Random(operations))
        indexes = [e.index for e in store_on(disk).load().log]
        assert indexes in ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("fault", ["fsync", "full"])
def test_a_failed_write_stops_the_store_for_good(fault: str) -> None:
    disk = SimDisk("n1")
    store = store_on(disk)
    store.write(entry(1))
    if fault == "fsync":
        disk.fail_syncs(1)
    else:
        disk.full = True
    with pytest.raises(StorageError):
        store.write(entry(2))
    disk.disarm()
    with pytest.raises(StorageError):  # never retried: the store is broken until a restart
        store.write(entry(2))
    assert disk.injected == 1
    disk.crash(random.Random(1))
    assert [e.index for e in store_on(disk).load().log] == [1]


def test_a_dead_process_can_no_longer_touch_its_files() -> None:
    disk = SimDisk("n1")
    old = store_on(disk)
    old.write(entry(1))
    disk.crash(random.Random(0))
    new = store_on(disk)
    new.write(entry(2))
    old.close()  # the dead process's connection closes late: it must change nothing
    assert [e.index for e in store_on(disk).load().log] == [1, 2]
