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
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from kazoo.exceptions import NoNodeError

from quorapay.api.schema import NodeStatus
from quorapay.cluster import supervisor, zookeeper
from quorapay.cluster.switchover import switchover
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError
from quorapay.core.znodes import Layout, parse_epoch, parse_leader
from quorapay.files import private_dir
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
    previous: str | None  # where its former database is (a folder of its data dir)


def take_backup(cluster: ClusterConfig, node: NodeConfig, dest: Path) -> BackupInfo:
    """Copy `node`'s database to `dest` (a new file), consistent at one point, online."""
    source = node.data_dir / DB
    if not source.exists():
        raise BackupError(f"{node.id} has no database at {source} (is this its host?)")
    if dest.exists():
        raise BackupError(f"{dest} exists: name a new file")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} is not a directory")
    started = time.monotonic()
    with _scratch(dest.parent, f".{dest.name}.") as partial:
        try:
            _copy(source, partial)
            info = inspect(cluster, partial, name=dest)
            _seal(partial)
            os.replace(partial, dest)
            _fsync_dir(dest.parent)
        except (OSError, sqlite3.Error) as exc:
            raise BackupError(f"cannot back {node.id} up to {dest}: {exc}") from None
    return replace(info, seconds=time.monotonic() - started)


def inspect(cluster: ClusterConfig, path: Path, *, name: Path | None = None) -> BackupInfo:
    """Load a backup as a node would (checksums, ranges), and read every stored transfer
    (ranges, and their digest against the one kept with them): what it holds, or BackupError.
    `name`: what to call it (the file it was copied from)."""
    shown = name or path
    try:
        with contextlib.closing(sqlite3.connect(_read_only(path), uri=True)) as db:
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
            if restored.ledger.digest() != restored.ledger.recount_digest():  # reads every row
                raise StorageError(f"{path}: its transfers do not match the digest kept "
                                   "with them")
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


def restore(cluster: ClusterConfig, node: NodeConfig, source: Path) -> RestoreReport:
    """Make `source` the database of the stopped `node`, promising at least the last epoch
    ZooKeeper granted (read once the node is stopped: it may have promised anything before).
    Its former database stays in a `previous-*` folder of its data dir."""
    started = time.monotonic()
    with _stopped(cluster, node), _scratch(node.data_dir, f".{DB}.restoring.") as seeded:
        epoch, leader = granted_epoch(cluster)
        try:
            try:
                _copy(source, seeded)
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"{source} is not a Quorapay node database ({exc})") from None
            info = inspect(cluster, seeded, name=source)
            promised = _seed(seeded, cluster, node, max(epoch, _promised(node)), leader)
            _seal(seeded)
            previous = _swap_in(node, seeded)
        except (OSError, sqlite3.Error) as exc:
            raise BackupError(f"cannot restore {node.id} from {source}: {exc}") from None
    return RestoreReport(node=node.id, backup=replace(info, seconds=time.monotonic() - started),
                         promised_epoch=promised, previous=previous)


def _seed(path: Path, cluster: ClusterConfig, node: NodeConfig, epoch: int,
          leader: str | None) -> int:
    """The copy becomes `node`'s, promising at least `epoch`; returns its promise."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'node_id'", (node.id,))
    store = Store(path, cluster=cluster.name, node_id=node.id, lock=False)
    try:
        return store.raise_promise(epoch, to=leader)
    finally:
        store.close()


def _promised(node: NodeConfig) -> int:
    """What the node's current database promised (0 if it has none or it cannot be read)."""
    path = node.data_dir / DB
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(_read_only(path), uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'promised_epoch'").fetchone()
    except sqlite3.Error:
        return 0
    return row[0] if row and isinstance(row[0], int) else 0


def _copy(source: Path, dest: Path) -> None:
    """SQLite's backup API, in one step: one read transaction of `source` (whatever its WAL
    holds, while a node may write it), into `dest`."""
    with contextlib.closing(sqlite3.connect(_read_only(source), uri=True)) as src, \
            contextlib.closing(sqlite3.connect(dest)) as copy:
        os.chmod(dest, 0o600)  # the ledger is private
        src.backup(copy)


def _seal(path: Path) -> None:
    """Make `path` one self-contained file (no WAL beside it), on disk."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _swap_in(node: NodeConfig, new: Path) -> str | None:
    """Make `new` the node's database in one rename: a crash leaves the old one or the new one.
    The old one stays reachable in a new `previous-*` folder (a hard link)."""
    db = node.data_dir / DB
    previous = None
    if db.exists():
        aside = Path(tempfile.mkdtemp(prefix=time.strftime("previous-%Y%m%dT%H%M%S-"),
                                      dir=node.data_dir))
        try:
            with contextlib.closing(sqlite3.connect(db)) as old:
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # node.db alone holds it
        except sqlite3.Error:  # damaged, likely why it is replaced: keep its WAL as it is
            for suffix in ("-wal", "-shm"):
                if (wal := db.with_name(DB + suffix)).exists():
                    os.replace(wal, aside / wal.name)
        os.link(db, aside / DB)
        previous = str(aside)
    os.replace(new, db)
    for suffix in ("-wal", "-shm"):  # an emptied WAL of the old one, if any
        db.with_name(DB + suffix).unlink(missing_ok=True)
    _fsync_dir(node.data_dir)
    return previous


def _read_only(path: Path) -> str:
    return f"{path.absolute().as_uri()}?mode=ro"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _scratch(folder: Path, prefix: str) -> Iterator[Path]:
    """A new, private, empty file name in `folder`, removed afterwards if still there."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=folder)
    os.close(fd)
    path = Path(name)
    path.unlink()  # SQLite creates it
    try:
        yield path
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def _stopped(cluster: ClusterConfig, node: NodeConfig) -> Iterator[None]:
    """Hold `node`'s data dir lock: it is not running, and cannot start meanwhile."""
    if supervisor.node_process(cluster, node).pid() is not None:
        raise BackupError(f"{node.id} is running: stop it first (`quorapay node rebuild` "
                          "stops, wipes and restarts a node)")
    try:
        private_dir(node.data_dir)  # a new host: its data dir may not exist yet
        lock = lock_data_dir(node.data_dir / DB)
    except StorageError as exc:
        raise BackupError(str(exc)) from None
    except OSError as exc:
        raise BackupError(f"cannot use {node.data_dir}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.close()


def granted_epoch(cluster: ClusterConfig) -> tuple[int, str | None]:
    """The last epoch ZooKeeper granted, and the node leading it if its leader znode says so:
    what a seeded node must promise, and to whom."""
    client = zookeeper.admin_client(cluster)
    kazoo_log = logging.getLogger("kazoo")
    level = kazoo_log.level
    kazoo_log.setLevel(logging.CRITICAL)  # its retries are not the user's business: our error is
    layout = Layout(cluster.name)
    try:
        client.start(timeout=ZOOKEEPER_TIMEOUT)
        data, _ = client.get(layout.epoch)
        try:
            leader = parse_leader(client.get(layout.leader)[0])
        except NoNodeError:
            leader = None
    except NoNodeError:
        raise BackupError("ZooKeeper holds no epoch for this cluster (a new cluster, or its "
                          "ZooKeeper data was reset): no node can be seeded safely until a "
                          "leader was elected (`quorapay up`)") from None
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
    epoch = int(record.epoch)
    return epoch, leader.node if leader is not None and leader.epoch == epoch else None


async def rebuild(cluster: ClusterConfig, node: NodeConfig, *, timeout: float,
                  on_progress: Callable[[str], None] = lambda _: None) -> RebuildReport:
    """With every other node up: hand leadership over if `node` leads, stop it, give it an
    empty database promising the last granted epoch, start it and wait until it applied the
    leader's commit index."""
    started = time.monotonic()
    await _others_up(cluster, node)
    process = supervisor.node_process(cluster, node)
    leader = supervisor.current_leader(await supervisor.statuses(cluster))
    if leader is not None and leader.node == node.id:
        on_progress(f"{node.id} leads: handing leadership over first")
        try:
            await switchover(cluster, None, timeout=30.0)
        except QuorapayError as exc:  # its followers take over when it stops
            on_progress(f"no switchover ({exc}): its followers take over when it stops")
    if process.pid() is not None:
        on_progress(f"stopping {node.id}")
        await trio.to_thread.run_sync(process.stop)
    with _stopped(cluster, node), _scratch(node.data_dir, f".{DB}.rebuilding.") as empty:
        epoch, leads = await trio.to_thread.run_sync(granted_epoch, cluster)
        try:
            store = Store(empty, cluster=cluster.name, node_id=node.id, lock=False)
            try:
                promised = store.raise_promise(max(epoch, _promised(node)), to=leads)
            finally:
                store.close()
            _seal(empty)
            previous = _swap_in(node, empty)
        except (OSError, sqlite3.Error, StorageError) as exc:
            raise BackupError(f"cannot rebuild {node.id}: {exc}") from None
    on_progress(f"starting {node.id} empty, promising epoch {promised}")
    process.start(supervisor.node_argv(cluster, node))
    index = await _caught_up(cluster, node, timeout=timeout, on_progress=on_progress)
    return RebuildReport(node=node.id, promised_epoch=promised, caught_up_index=index,
                         seconds=time.monotonic() - started, previous=previous)


async def _others_up(cluster: ClusterConfig, node: NodeConfig) -> None:
    """Refuse unless every other node answers and one of them can lead: the rebuilt node's
    ledger comes from them, and until it caught up it holds nothing they may need."""
    others = [n.id for n in cluster.nodes if n.id != node.id]
    if not others:
        raise BackupError("a one-node cluster has no other copy to rebuild from: restore it "
                          "from a backup (`quorapay restore`)")
    found = await supervisor.statuses(cluster)
    down = [n for n in others if not isinstance(found.get(n), NodeStatus)]
    if down:
        raise BackupError(f"{', '.join(down)} not answering: rebuild a node only while every "
                          "other node is up (`quorapay status`)")


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


