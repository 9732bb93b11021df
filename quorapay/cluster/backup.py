"""Backups of one node's database, restores into a stopped node, and rebuilding a node.

A backup is a copy of a node's SQLite database made with SQLite's online backup API from a
read-only connection of its own, in one step: one read transaction, so one consistent point of
the node's writes (a WAL snapshot) while the node keeps writing. It is checked by loading it as
the node would (checksums, ranges) before it is given its name. It runs where the node's data
dir is (the node's host).

A node seeded from a backup (its own or another node's) or from nothing (a rebuild) must not
accept a deposed leader: what it promised since the backup is lost. So a restore or rebuild
raises the node's promise to the last epoch ZooKeeper granted, promised to whichever node leads
it; a leader of an older epoch is refused. It then catches up from the leader like any follower
that was down (docs/05-security: what a node that lost its disk may still cost).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from kazoo.exceptions import NoNodeError

from quorapay.cluster import supervisor, zookeeper
from quorapay.cluster.switchover import switchover
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError
from quorapay.core.znodes import Layout, parse_epoch
from quorapay.node.storage import StorageError, Store, lock_data_dir

DB = "node.db"
ZOOKEEPER_TIMEOUT = 10.0


class BackupError(QuorapayError):
    """A backup, restore or rebuild that cannot be done; nothing was changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupInfo:
    """What a backup file holds."""

    node: str  # the node it was taken from
    cluster: str
    file: str
    applied_index: int  # its ledger is the state after this index
    log_start: int
    last_index: int
    promised_epoch: int
    accounts: int
    transfers: int
    bytes: int
    seconds: float = 0.0  # taking (or restoring) it


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreReport:
    node: str
    backup: BackupInfo
    promised_epoch: int  # raised to ZooKeeper's last granted epoch if it was below
    previous: str | None  # where the node's former database was moved, if it had one


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildReport:
    node: str
    promised_epoch: int
    caught_up_index: int  # the leader's commit index it reached
    seconds: float


def take_backup(cluster: ClusterConfig, node: NodeConfig, dest: Path) -> BackupInfo:
    """Copy `node`'s database to `dest` (a new file), consistent at one point, online."""
    source = node.data_dir / DB
    if not source.exists():
        raise BackupError(f"{node.id} has no database at {source} (is this its host?)")
    if dest.exists():
        raise BackupError(f"{dest} exists: name a new file")
    partial = dest.with_name(dest.name + ".partial")
    started = time.monotonic()
    try:
        _copy_online(source, partial)
        info = inspect(cluster, partial, name=dest)
        os.replace(partial, dest)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot back {node.id} up to {dest}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return replace(info, seconds=time.monotonic() - started)


def _copy_online(source: Path, dest: Path) -> None:
    old_umask = os.umask(0o077)  # the ledger is private
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, \
                contextlib.closing(sqlite3.connect(dest)) as copy:
            src.backup(copy)  # one step: one read transaction, one consistent point
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        os.umask(old_umask)


def inspect(cluster: ClusterConfig, path: Path, *, name: Path | None = None) -> BackupInfo:
    """Load a backup as a node would (checksums, ranges): what it holds, or BackupError.
    `name`: what to call it (the file it was copied from)."""
    shown = name or path
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise BackupError(f"{shown} is not a Quorapay node database ({exc})") from None
    if meta.get("cluster") != cluster.name:
        raise BackupError(f"{shown} is a backup of cluster {meta.get('cluster')!r}, not "
                          f"{cluster.name!r}")
    node = str(meta.get("node_id"))
    try:
        store = Store(path, cluster=cluster.name, node_id=node, lock=False)
        try:
            restored = store.load()
        finally:
            store.close()
    except StorageError as exc:
        raise BackupError(f"{shown} is not a usable backup: {exc}") from None
    return BackupInfo(node=node, cluster=cluster.name, file=str(shown),
                      applied_index=restored.applied_index, log_start=restored.snapshot_index,
                      last_index=restored.log[-1].index if restored.log
                      else restored.snapshot_index,
                      promised_epoch=restored.promised_epoch,
                      accounts=len(restored.ledger.accounts),
                      transfers=len(restored.ledger.transfers), bytes=path.stat().st_size)


def restore(cluster: ClusterConfig, node: NodeConfig, source: Path, *, epoch: int
            ) -> RestoreReport:
    """Make `source` the database of the stopped `node`, promising at least `epoch` (the last
    ZooKeeper granted). Its former database is moved aside, not deleted."""
    started = time.monotonic()
    with _stopped(cluster, node):
        seeded = node.data_dir / f"{DB}.restoring"
        seeded.unlink(missing_ok=True)
        try:
            shutil.copyfile(source, seeded)
            os.chmod(seeded, 0o600)
            info = inspect(cluster, seeded, name=source)
            promised = _claim_as(seeded, cluster, node, info.node, epoch)
            previous = _move_aside(node)
            os.replace(seeded, node.data_dir / DB)
            _fsync_dir(node.data_dir)
        except OSError as exc:
            raise BackupError(f"cannot restore {node.id} from {source}: {exc}") from None
        finally:
            seeded.unlink(missing_ok=True)
    return RestoreReport(node=node.id, backup=replace(info, seconds=time.monotonic() - started),
                         promised_epoch=promised, previous=previous)


def _claim_as(path: Path, cluster: ClusterConfig, node: NodeConfig, was: str, epoch: int
              ) -> int:
    """The copy becomes `node`'s, promising at least `epoch`; returns its promise."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE meta SET value = ? WHERE key = 'node_id'", (node.id,))
        db.execute("COMMIT")
    store = Store(path, cluster=cluster.name, node_id=node.id, lock=False)
    try:
        return store.raise_promise(epoch)
    finally:
        store.close()


def _move_aside(node: NodeConfig) -> str | None:
    """Move the node's database files into `previous-<time>/` of its data dir."""
    files = [node.data_dir / f"{DB}{suffix}" for suffix in ("", "-wal", "-shm")]
    if not any(f.exists() for f in files):
        return None
    aside = node.data_dir / time.strftime("previous-%Y%m%dT%H%M%S")
    aside.mkdir(mode=0o700, exist_ok=True)
    for file in files:
        if file.exists():
            os.replace(file, aside / file.name)
    return str(aside)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _stopped(cluster: ClusterConfig, node: NodeConfig) -> Iterator[None]:
    """Hold `node`'s data dir lock: it is not running, and cannot start meanwhile."""
    if supervisor.node_process(cluster, node).pid() is not None:
        raise BackupError(f"{node.id} is running: stop it first (`quorapay node rebuild` "
                          "stops, wipes and restarts a node)")
    try:
        lock = lock_data_dir(node.data_dir / DB)
    except StorageError as exc:
        raise BackupError(str(exc)) from None
    try:
        yield
    finally:
        lock.close()


def granted_epoch(cluster: ClusterConfig) -> int:
    """The last epoch ZooKeeper granted (0 if none yet): what a seeded node must promise."""
    client = zookeeper.admin_client(cluster)
    kazoo_log = logging.getLogger("kazoo")
    level = kazoo_log.level
    kazoo_log.setLevel(logging.CRITICAL)  # its retries are not the user's business: our error is
    try:
        client.start(timeout=ZOOKEEPER_TIMEOUT)
        data, _ = client.get(Layout(cluster.name).epoch)
    except NoNodeError:
        return 0
    except Exception as exc:  # kazoo's timeouts are not KazooExceptions: one clear line
        raise BackupError(f"cannot read the last granted epoch from ZooKeeper at "
                          f"{cluster.zookeeper.connect_string} ({exc or type(exc).__name__}): "
                          "a seeded node must promise it; start ZooKeeper first") from None
    finally:
        with contextlib.suppress(Exception):
            client.stop()
            client.close()
        kazoo_log.setLevel(level)
    record = parse_epoch(data)
    if record is None:
        raise BackupError("ZooKeeper's epoch znode does not hold an epoch")
    return int(record.epoch)


async def rebuild(cluster: ClusterConfig, node: NodeConfig, *, timeout: float,
                  on_progress: Callable[[str], None] = lambda _: None) -> RebuildReport:
    """Stop `node`, move its database aside, start it empty (promising the last granted
    epoch) and wait until it has applied the leader's commit index."""
    started = time.monotonic()
    epoch = await trio.to_thread.run_sync(granted_epoch, cluster)
    process = supervisor.node_process(cluster, node)
    leader = supervisor.current_leader(await supervisor.statuses(cluster))
    if leader is not None and leader.node == node.id and len(cluster.nodes) > 1:
        on_progress(f"{node.id} leads: handing leadership over first")
        with contextlib.suppress(QuorapayError):  # else its followers take over when it stops
            await switchover(cluster, None, timeout=30.0)
    if process.pid() is not None:
        on_progress(f"stopping {node.id}")
        if not await trio.to_thread.run_sync(process.stop):
            raise BackupError(f"{node.id} did not stop")
    with _stopped(cluster, node):
        _move_aside(node)
        store = Store(node.data_dir / DB, cluster=cluster.name, node_id=node.id, lock=False)
        try:
            promised = store.raise_promise(epoch)
        finally:
            store.close()
    on_progress(f"starting {node.id} empty, promising epoch {epoch}")
    process.start(supervisor.node_argv(cluster, node))
    index = await _caught_up(cluster, node, timeout=timeout, on_progress=on_progress)
    return RebuildReport(node=node.id, promised_epoch=promised, caught_up_index=index,
                         seconds=time.monotonic() - started)


async def _caught_up(cluster: ClusterConfig, node: NodeConfig, *, timeout: float,
                     on_progress: Callable[[str], None]) -> int:
    """Wait until `node` applied the commit index the leader reported after it started."""
    target: int | None = None
    with trio.move_on_after(timeout):
        while True:
            found = await supervisor.statuses(cluster)
            leader, mine = supervisor.current_leader(found), found.get(node.id)
            if target is None and leader is not None and leader.node != node.id:
                target = leader.commit_index
            if target is not None and not isinstance(mine, str) and mine is not None:
                on_progress(f"{node.id} applied {mine.applied_index} of {target}")
                if mine.applied_index >= target:
                    return target
            await trio.sleep(0.2)
    raise BackupError(f"{node.id} did not catch up within {timeout:g}s (see `quorapay status` "
                      "and its log)")


