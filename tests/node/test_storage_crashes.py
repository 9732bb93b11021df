"""The real store under a crash at every write it makes: recovery never goes back past a write
it acknowledged. The files a crash leaves are built from a VFS that records every write and
fsync SQLite makes for the store (what was fsynced, with or without the writes after it), and
recovered by the store as a restarted node opens them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quorapay.node.storage import StorageError, Store
from tests.node.recording_vfs import ApswConnection, RecordingVFS, write_image
from tests.node.test_storage import ME, boot, run, snapshot, workload


def recorded_run(folder: Path, vfs: RecordingVFS,
                 connect: Callable[[Path], Any] | None = None) -> tuple[list[tuple], list[int]]:
    """The workload on a store over `vfs`: each acknowledged state, and how many file
    operations had been made when it was acknowledged."""
    store = Store(folder / "node.db", cluster="test", node_id=ME, connect=connect or vfs.connect)
    states, acknowledged_at = [snapshot(store)], [len(vfs.ops)]

    def acknowledged() -> None:
        states.append(snapshot(store))
        acknowledged_at.append(len(vfs.ops))

    replica, ledger = boot(store)
    run(store, replica, ledger, workload(), after_write=acknowledged)
    store.close()  # (what closing writes comes after every crash point looked at)
    return states, acknowledged_at


def lost_acknowledged_writes(vfs: RecordingVFS, states: list[tuple], acknowledged_at: list[int],
                             scratch: Path) -> list[str]:
    """Every crash point and image whose recovery is torn or older than an acknowledged write."""
    problems = []
    for upto in range(acknowledged_at[0], acknowledged_at[-1] + 1):
        acknowledged = sum(1 for at in acknowledged_at if at <= upto) - 1
        for tail, files in zip(("fsynced", "all written"), vfs.images(upto), strict=True):
            folder = scratch / f"{upto}-{tail.replace(' ', '-')}"
            write_image(folder, files)
            recovered = Store(folder / "node.db", cluster="test", node_id=ME)
            state = snapshot(recovered)
            recovered.close()
            if state not in states:
                problems.append(f"after {upto} operations ({tail}): a torn state")
            elif states.index(state) < acknowledged:
                problems.append(f"after {upto} operations ({tail}): state {states.index(state)}"
                                f", but write {acknowledged} was acknowledged")
    return problems


def test_a_crash_after_any_write_or_fsync_recovers_every_acknowledged_write(
        tmp_path: Path) -> None:
    vfs = RecordingVFS()
    states, acknowledged_at = recorded_run(tmp_path / "run", vfs)
    assert len(states) >= 8 and acknowledged_at[-1] - acknowledged_at[0] >= 50
    assert lost_acknowledged_writes(vfs, states, acknowledged_at, tmp_path / "crashes") == []


def test_the_check_sees_a_store_that_acknowledges_before_fsync(tmp_path: Path) -> None:
    """A plausible one-line mistake: synchronous=NORMAL, which in WAL mode fsyncs only at
    checkpoints. Every write is still acknowledged; a crash takes some back."""
    vfs = RecordingVFS()

    class Careless(ApswConnection):
        def execute(self, sql: str, parameters: Any = (), /) -> Any:
            wrong = "PRAGMA synchronous=NORMAL" if sql == "PRAGMA synchronous=FULL" else sql
            return super().execute(wrong, parameters)

    states, acknowledged_at = recorded_run(tmp_path / "run", vfs,
                                           lambda path: Careless(vfs.connect(path).db))
    problems = lost_acknowledged_writes(vfs, states, acknowledged_at, tmp_path / "crashes")
    assert any("was acknowledged" in p for p in problems), problems


def test_a_failed_fsync_breaks_the_store_for_good_and_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    """What PostgreSQL learned in 2018: after a failed fsync the kernel may have dropped the
    pages, so a retry that succeeds proves nothing. The store refuses every later write (the
    node stops); a restart recovers from what is on disk, which holds every acknowledged
    write."""
    vfs = RecordingVFS()
    store = Store(tmp_path / "run" / "node.db", cluster="test", node_id=ME, connect=vfs.connect)
    states = [snapshot(store)]
    failed: list[Any] = []
    write = store.write

    def spy(batch: Any) -> None:
        try:
            write(batch)
        except StorageError:
            failed.append(batch)
            raise
    store.write = spy  # type: ignore[method-assign]
    replica, ledger = boot(store)
    vfs.fail_fsync(after=8)
    with pytest.raises(StorageError, match=r"a write failed .*fsync failed.*restart it"):
        run(store, replica, ledger, workload(), after_write=lambda: states.append(
            snapshot(store)))
    assert len(states) > 2 and failed
    syncs = sum(op.kind == "sync" for op in vfs.ops)
    with pytest.raises(StorageError, match="a write failed"):
        write(failed[0])  # the same batch again: refused, not retried
    assert sum(op.kind == "sync" for op in vfs.ops) == syncs
    durable, _ = vfs.images(len(vfs.ops))  # the machine crashes now, say
    write_image(tmp_path / "restarted", durable)
    recovered = Store(tmp_path / "restarted" / "node.db", cluster="test", node_id=ME)
    assert snapshot(recovered) == states[-1]  # every acknowledged write, nothing else
    recovered.close()
    store.close()
