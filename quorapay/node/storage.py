"""SQLite storage of one node: the log, the promised epoch, the applied index and the ledger.

WAL mode with synchronous=FULL: a write returns only once it is durable. The driver hands one
`WriteBatch` per loop iteration (group commit: many entries, one fsync), and everything in it --
log truncation and appends, the promised epoch, ledger rows and the applied index -- lands in one
transaction, so a crash at any point leaves the state of the previous batch.

Each log record carries a CRC32 of (index, epoch, timestamp, payload); a mismatch on load is
reported as a corrupt record and the node refuses to start rather than apply it. Everything else
loaded is range-checked too (`quorapay.core.bounds`), and a database SQLite itself finds damaged
is reported as such: a StorageError naming the file, never a raw sqlite3 exception.

The ledger's accounts are loaded at start; its decided transfers are not: the ledger reads them
through `StoredTransfers` (a read-only connection of its own, with a bounded page cache), in
one query per batch of entries, and the store keeps their count and encoded size in `meta`, so
start-up costs the accounts and the log, not the transfers.

Compaction deletes log records up to a point and records it (`snapshot_index`, `snapshot_epoch`):
the ledger tables, kept at the applied index, hold their effect. Installing a snapshot replaces
the ledger tables, the log and those markers in the same one transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec
import trio

from quorapay.config import DEFAULT_CACHE_MB
from quorapay.core.bounds import MAX_MONEY, in_counter_range
from quorapay.core.errors import QuorapayError
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import (
    MODULUS,
    Account,
    Expiring,
    Ledger,
    LedgerState,
    Status,
    TransferRecord,
    TransferRow,
    record_hash,
    record_of,
    record_size,
    record_values,
)
from quorapay.core.node_state import WriteBatch
from quorapay.core.ready import Persist
from quorapay.core.types import (
    AccountId,
    Cents,
    Epoch,
    LogEntry,
    LogIndex,
    NodeId,
    Payload,
    Transfer,
    TransferId,
)
from quorapay.files import private_dir

# 2: snapshot_index / snapshot_epoch (compaction); 3: entry and transfer timestamps; 4: account
# limits, pending amounts and closing; transfer flags and the amount moved. Older versions are
# upgraded in place.
SCHEMA_VERSION = 4
_TRANSFERS_TABLE = """(
    id TEXT PRIMARY KEY, debit TEXT NOT NULL, credit TEXT NOT NULL, amount INTEGER NOT NULL,
    currency TEXT NOT NULL, status TEXT NOT NULL, idx INTEGER NOT NULL,
    wall_ms INTEGER NOT NULL DEFAULT 0, logical INTEGER NOT NULL DEFAULT 0,
    flags INTEGER NOT NULL DEFAULT 0, moved INTEGER NOT NULL DEFAULT 0,
    pending_id TEXT NOT NULL DEFAULT '', timeout_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"""
_EXPIRING_TABLE = """CREATE TABLE IF NOT EXISTS expiring (
    id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL, debit TEXT NOT NULL, credit TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL) WITHOUT ROWID"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    idx INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, payload BLOB NOT NULL, crc INTEGER NOT NULL,
    wall_ms INTEGER NOT NULL DEFAULT 0, logical INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, currency TEXT NOT NULL, flags INTEGER NOT NULL,
    balance INTEGER NOT NULL, debits_pending INTEGER NOT NULL, credits_pending INTEGER NOT NULL,
    closed INTEGER NOT NULL, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transfers {_TRANSFERS_TABLE};
{_EXPIRING_TABLE};
"""
_META_DEFAULTS: list[tuple[str, int | str | None]] = [
    ("promised_epoch", 0), ("applied_index", 0), ("snapshot_index", 0), ("snapshot_epoch", 0),
    ("snapshot_wall_ms", 0), ("snapshot_logical", 0),
    ("promised_to", None),  # whom promised_epoch was promised to (added without a new schema)
    ("transfer_count", 0), ("transfer_bytes", 0),  # the transfers table's rows, their size
    ("transfer_digest", f"{0:064x}")]  # and the sum of their hashes (`record_hash`), in hex
_COUNTERS = ("promised_epoch", "applied_index", "snapshot_index", "snapshot_epoch",
             "snapshot_wall_ms", "snapshot_logical", "transfer_count", "transfer_bytes")
_TRANSFER_COLUMNS = ("id, debit, credit, amount, currency, status, idx, wall_ms, logical, flags, "
                     "moved, pending_id, timeout_ms")
_ACCOUNT_COLUMNS = "id, currency, flags, balance, debits_pending, credits_pending, closed, idx"
_INSERT_ACCOUNT = f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS}) VALUES ({'?, ' * 7}?)"
_INSERT_TRANSFER = f"INSERT INTO transfers ({_TRANSFER_COLUMNS}) VALUES ({'?, ' * 12}?)"
_INSERT_EXPIRING = "INSERT OR REPLACE INTO expiring VALUES (?, ?, ?, ?, ?, ?)"
_UPGRADE_TO_4 = (  # see Store._upgrade_to_4
    "ALTER TABLE accounts RENAME TO accounts_3",
    """CREATE TABLE accounts (
        id TEXT PRIMARY KEY, currency TEXT NOT NULL, flags INTEGER NOT NULL,
        balance INTEGER NOT NULL, debits_pending INTEGER NOT NULL,
        credits_pending INTEGER NOT NULL, closed INTEGER NOT NULL, idx INTEGER NOT NULL
        ) WITHOUT ROWID""",
    "INSERT INTO accounts SELECT id, currency, 1 - allow_negative, balance, 0, 0, 0, idx "
    "FROM accounts_3",
    "DROP TABLE accounts_3",
    "ALTER TABLE transfers ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE transfers ADD COLUMN moved INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE transfers ADD COLUMN pending_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE transfers ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0",
    _EXPIRING_TABLE,
    "UPDATE transfers SET moved = amount WHERE status = 'ok'",
    "DELETE FROM meta WHERE key IN ('transfer_count', 'transfer_bytes', 'transfer_digest')")
# a snapshot being received: its transfers, staged part by part, swapped in when installed
_STAGING = ("DROP TABLE IF EXISTS transfers_staged",
            f"CREATE TABLE transfers_staged {_TRANSFERS_TABLE}")
_payload_encoder = msgspec.msgpack.Encoder()
_payload_decoder = msgspec.msgpack.Decoder(Payload)


class StorageError(QuorapayError):
    """The data directory cannot be used: corrupt, another node's, or a newer schema."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored:
    """Everything a node recovers from its disk at start."""

    promised_epoch: Epoch
    log: list[LogEntry]  # the entries after snapshot_index
    applied_index: LogIndex
    ledger: Ledger
    snapshot_index: LogIndex = LogIndex(0)  # the log was compacted up to here
    snapshot_epoch: Epoch = Epoch(0)  # the epoch of the entry at snapshot_index
    snapshot_ts: Timestamp = Timestamp(0, 0)  # and its timestamp
    promised_to: NodeId | None = None  # whom promised_epoch was promised to, if recorded


def lock_data_dir(database: Path) -> IO[str]:
    """Hold an exclusive lock on the database's data dir for the life of the process (or until
    the returned file is closed); StorageError if a running node holds it."""
    return _lock(database.with_name(database.name + ".lock"))


def _lock(path: Path) -> IO[str]:
    """Hold an exclusive lock on the data dir for the life of the process (or until close)."""
    handle = open(path, "a")  # noqa: SIM115  (held open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StorageError(f"{path.parent} is in use by another running node process") from None
    return handle


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> StorageError:
    """The error for a database SQLite refuses: damaged (with the remedy), or unopenable."""
    if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return StorageError(f"{path} is damaged ({exc}): this node cannot start from it; with "
                            "every other node up, move its data dir away and restart it: it "
                            "catches up from them (see docs/05-security, known limits)")
    return StorageError(f"cannot open {path}: {exc}")


def record_crc(index: int, epoch: int, payload: bytes, ts: Timestamp | None = None) -> int:
    """The checksum of a log record; schema 2 records had no timestamp (`ts` None)."""
    head = f"{index}:{epoch}:" if ts is None else f"{index}:{epoch}:{ts.wall_ms}:{ts.logical}:"
    return zlib.crc32(payload, zlib.crc32(head.encode()))


class Connection(Protocol):
    """What the store uses of a SQLite connection: `sqlite3`'s (the node's), or another one
    over the same file format (tests put a VFS that records every write and fsync under it)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
    def executescript(self, script: str, /) -> Any: ...
    def close(self) -> None: ...


def connect_sqlite3(path: Path) -> Connection:
    """Autocommit (the store opens its own transactions), usable from the writer thread."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def connect_reader(path: Path) -> Connection:
    """A read-only connection beside the writer's (WAL: it reads the last commit)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                           isolation_level=None, check_same_thread=False)


class SqliteTransfers:
    """The decided transfers in a store's `transfers` table, as a ledger reads them
    (`quorapay.core.stored.StoredTransfers`). Lookups go through one connection, kept; a scan
    opens one of its own (it may run in a worker thread) unless `scans` is None (then it uses
    the lookup connection: the simulator's single-threaded store)."""

    def __init__(self, path: Path, lookups: Connection,
                 scans: Callable[[Path], Connection] | None) -> None:
        self._path = path
        self._db = lookups
        self._scans = scans

    def get_many(self, ids: Collection[TransferId]) -> dict[TransferId, TransferRecord]:
        found: dict[TransferId, TransferRecord] = {}
        wanted = list(ids)
        with self._reading():
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start:start + _IDS_PER_QUERY]
                rows = self._db.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id "
                                        f"IN ({', '.join('?' * len(chunk))})", chunk)
                for row in rows:
                    record = _transfer_record(self._path, row)
                    found[record.transfer.id] = record
        return found

    def scan(self, upto: LogIndex) -> Iterator[TransferRecord]:
        with self._reading():
            db = self._db if self._scans is None else self._scans(self._path)
            try:
                for row in db.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers "
                                      "WHERE idx <= ? ORDER BY id", (upto,)):
                    yield _transfer_record(self._path, row)
            finally:
                if db is not self._db:
                    db.close()

    def chunk(self, after: TransferId | None, upto: LogIndex, limit: int
              ) -> list[TransferRow]:
        with self._reading():
            db = self._db if self._scans is None else self._scans(self._path)
            try:
                rows = db.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id > ? "
                                  "AND idx <= ? ORDER BY id LIMIT ?",
                                  ("" if after is None else after, upto, limit)).fetchall()
            finally:
                if db is not self._db:
                    db.close()
        try:  # checked as decoding a peer's part would (in C: a part is thousands of rows)
            return msgspec.convert(rows, list[TransferRow])
        except msgspec.ValidationError as exc:
            raise StorageError(f"{self._path}: corrupt transfer row ({exc})") from None

    def count(self) -> int:
        return self._meta("transfer_count")

    def export_bytes(self) -> tuple[int, LogIndex]:
        with self._reading():
            meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN "
                                         "('transfer_bytes', 'applied_index')").fetchall())
        return (_counter(self._path, "transfer_bytes", meta.get("transfer_bytes")),
                LogIndex(_counter(self._path, "applied_index", meta.get("applied_index"))))

    def digest_sum(self) -> tuple[int, LogIndex]:
        with self._reading():
            meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN "
                                         "('transfer_digest', 'applied_index')").fetchall())
        return _digest_value(self._path, meta.get("transfer_digest")), LogIndex(
            _counter(self._path, "applied_index", meta.get("applied_index")))

    def _meta(self, key: str) -> int:
        with self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return _counter(self._path, key, None if row is None else row[0])

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A read SQLite refuses (damage, an I/O error) is a StorageError naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise _unusable(self._path, exc) from None


def _counter(path: Path, key: str, value: object) -> int:
    if not isinstance(value, int) or not in_counter_range(value):
        raise StorageError(f"{path}: corrupt: meta {key} = {value!r} is out of range")
    return value


def _digest_value(path: Path, value: object) -> int:
    if not (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value)):
        raise StorageError(f"{path}: corrupt: meta transfer_digest = {value!r}")
    return int(value, 16)


_IDS_PER_QUERY = 500  # under SQLite's bound on parameters in one statement


def _transfer_record(path: Path, row: Sequence[Any]) -> TransferRecord:
    """A row of the transfers table; StorageError if it is damaged or out of range."""
    try:
        i, d, c, a, cur, s, x, w, lg, f, m, p, t = row
        record = TransferRecord(
            transfer=Transfer(id=TransferId(i), debit=AccountId(d), credit=AccountId(c),
                              amount=Cents(a), currency=cur, flags=f, pending_id=p,
                              timeout_ms=t),
            status=Status(s), index=LogIndex(x), ts=Timestamp(w, lg), moved=m)
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{path}: corrupt transfer row ({exc})") from None
    if not (isinstance(a, int) and abs(a) <= MAX_MONEY and in_counter_range(x)
            and in_counter_range(w) and in_counter_range(lg) and in_counter_range(f)
            and isinstance(m, int) and abs(m) <= MAX_MONEY and isinstance(p, str)
            and in_counter_range(t)):
        raise StorageError(f"{path}: corrupt: transfer row {i!r} is out of range")
    return record


class Store:
    """One node's database. Synchronous methods; `write_async` runs them off the event loop."""

    def __init__(self, path: Path, *, cluster: str, node_id: str,
                 connect: Callable[[Path], Connection] = connect_sqlite3,
                 lock: bool = True, cache_mb: int = DEFAULT_CACHE_MB) -> None:
        """Open (or create) the node's database. Without `lock` the data dir is neither created
        nor locked: `connect` keeps the files elsewhere (the simulator's disk). `cache_mb`
        bounds the page cache through which the ledger reads its stored transfers."""
        self.path = path
        self._cache_mb = cache_mb
        # the ledger reads through connections of its own beside the writer's, unless the
        # files are not sqlite3's (a VFS of the simulator or a test: one connection for all)
        self._reader = connect_reader if connect is connect_sqlite3 else None
        self._lookups: Connection | None = None
        self._lock: IO[str] | None = None
        if lock:
            try:
                private_dir(path.parent)
            except OSError as exc:
                raise StorageError(f"cannot create {path.parent}: {exc.strerror}") from None
            self._lock = _lock(path.with_name(path.name + ".lock"))
        try:
            self._db = connect(path)
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise _unusable(path, exc) from None
        try:
            self._configure()
            self._db.executescript(_SCHEMA)
            self._claim(cluster, node_id)
            # a snapshot half received when the node stopped: it starts over, from its sender
            self._db.execute("DROP TABLE IF EXISTS transfers_staged")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _unusable(path, exc) from None
        except StorageError:
            self.close()
            raise
        self._writer = trio.CapacityLimiter(1)  # one writer: batches land in order
        self._broken = ""  # why no write may be tried any more

    def _configure(self) -> None:
        """Durability: a commit returns only once its WAL frames are fsynced."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()

    def _claim(self, cluster: str, node_id: str) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", SCHEMA_VERSION), ("cluster", cluster), ("node_id", node_id),
                *_META_DEFAULTS])
            return
        if (meta.get("cluster"), meta.get("node_id")) != (cluster, node_id):
            raise StorageError(f"{self.path} belongs to node {meta.get('node_id')!r} of cluster "
                               f"{meta.get('cluster')!r}, not node {node_id!r} of {cluster!r}")
        if meta.get("schema_version") in (1, 2):
            self._upgrade()
            meta["schema_version"] = 3
        if meta.get("schema_version") == 3:
            self._upgrade_to_4()
            meta["schema_version"] = SCHEMA_VERSION
            for key in ("transfer_count", "transfer_bytes", "transfer_digest"):
                meta.pop(key, None)  # rows have two more fields: size and hash them again
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise StorageError(f"{self.path}: schema version {meta.get('schema_version')}, "
                               f"this build reads {SCHEMA_VERSION}")
        if not {"transfer_count", "transfer_bytes", "transfer_digest"} <= meta.keys():
            self._count_transfers()
        self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", _META_DEFAULTS)

    def _count_transfers(self) -> None:
        """A database from before the store kept its transfers' count and size: count them,
        once (the only time the store reads every transfer)."""
        count = size = digest = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for row in self._db.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers"):
                record = _transfer_record(self.path, row)
                count, size = count + 1, size + record_size(record)
                digest += record_hash(record)
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("transfer_count", count), ("transfer_bytes", size),
                ("transfer_digest", f"{digest % MODULUS:064x}")])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _upgrade(self) -> None:
        """Schema 1 or 2 to 3, in one transaction: markers that did not exist start at zero;
        entries written before timestamps existed get (0, index), which increases with the
        index, and a checksum over it (each old record's checksum is verified first); decided
        transfers get the timestamp of their deciding entry, (0, index), so the ledger still
        equals the replay of its log."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [  # (not the
                (key, value) for key, value in _META_DEFAULTS  # transfer sums: counted next)
                if not key.startswith("transfer_")])
            for table in ("log", "transfers"):
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for column in ("wall_ms", "logical"):
                    if column not in columns:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} "
                                         "INTEGER NOT NULL DEFAULT 0")
            rows = self._db.execute("SELECT idx, epoch, payload, crc FROM log").fetchall()
            for index, epoch, payload, crc in rows:
                if record_crc(index, epoch, payload) != crc:
                    raise StorageError(f"{self.path}: corrupt log record at index {index} "
                                       "(checksum)")
            self._db.executemany(
                "UPDATE log SET logical = idx, crc = ? WHERE idx = ?",
                [(record_crc(i, e, p, Timestamp(0, i)), i) for i, e, p, _ in rows])
            self._db.execute("UPDATE transfers SET wall_ms = 0, logical = idx")
            self._db.execute("UPDATE meta SET value = (SELECT value FROM meta WHERE key = "
                             "'snapshot_index') WHERE key = 'snapshot_logical'")
            self._set_meta("schema_version", 3)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _upgrade_to_4(self) -> None:
        """Schema 3 to 4, in one transaction: an account's allow_negative becomes its limits
        (every account but an issuer keeps debits within credits), with nothing pending and
        open; a decided transfer has no flags and moved its amount if it succeeded."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _UPGRADE_TO_4:
                self._db.execute(statement)
            self._set_meta("schema_version", SCHEMA_VERSION)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.close()
        self._db.close()
        self._unlock()

    def stored_transfers(self) -> SqliteTransfers:
        """The decided transfers on disk, as the ledger reads them."""
        if self._reader is None:
            return SqliteTransfers(self.path, self._db, None)
        if self._lookups is None:
            self._lookups = self._reader(self.path)
            self._lookups.execute(f"PRAGMA cache_size = -{self._cache_mb * 1024}")
        return SqliteTransfers(self.path, self._lookups, self._reader)

    # ------------------------------------------------------------------ load

    def load(self) -> Restored:
        """Everything the node recovers; StorageError if anything is damaged or out of range."""
        try:
            return self._load()
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc) from None
        except (ValueError, TypeError) as exc:  # a row whose values are of the wrong kind
            raise StorageError(f"{self.path}: corrupt row ({exc})") from None

    def _load(self) -> Restored:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        for key in _COUNTERS:
            self._check(in_counter_range(meta.get(key)), f"meta {key} = {meta.get(key)!r}")
        promised_to = meta.get("promised_to")
        self._check(promised_to is None or isinstance(promised_to, str),
                    f"meta promised_to = {promised_to!r}")
        start = LogIndex(meta["snapshot_index"])
        log = [self._decode(*row) for row in
               self._db.execute(
                   "SELECT idx, epoch, payload, crc, wall_ms, logical FROM log ORDER BY idx")]
        for position, entry in enumerate(log, start=start + 1):
            if entry.index != position:
                raise StorageError(f"{self.path}: log has a gap before index {entry.index}")
        applied = LogIndex(meta["applied_index"])
        if not start <= applied <= start + len(log):
            raise StorageError(f"{self.path}: applied index {applied} outside the log "
                               f"({start}..{start + len(log)})")
        return Restored(promised_epoch=Epoch(meta["promised_epoch"]), log=log,
                        promised_to=None if promised_to is None else NodeId(promised_to),
                        applied_index=applied, ledger=self._load_ledger(applied),
                        snapshot_index=start, snapshot_epoch=Epoch(meta["snapshot_epoch"]),
                        snapshot_ts=Timestamp(meta["snapshot_wall_ms"],
                                              meta["snapshot_logical"]))

    def _check(self, condition: bool, what: str) -> None:
        if not condition:
            raise StorageError(f"{self.path}: corrupt: {what} is out of range")

    def _decode(self, index: int, epoch: int, payload: bytes, crc: int, wall_ms: int,
                logical: int) -> LogEntry:
        self._check(all(in_counter_range(v) for v in (index, epoch, wall_ms, logical))
                    and isinstance(payload, bytes), f"log record {index!r}")
        ts = Timestamp(wall_ms, logical)
        if record_crc(index, epoch, payload, ts) != crc:
            raise StorageError(f"{self.path}: corrupt log record at index {index} (checksum)")
        try:
            decoded = _payload_decoder.decode(payload)
        except ValueError as exc:  # msgspec.DecodeError, or a UnicodeDecodeError it lets through
            raise StorageError(f"{self.path}: undecodable log record at {index}: {exc}") from exc
        return LogEntry(index=LogIndex(index), epoch=Epoch(epoch), payload=decoded, ts=ts)

    def _load_ledger(self, applied: LogIndex) -> Ledger:
        """The accounts, and the transfers table as the ledger's store (not read now)."""
        rows = self._db.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts").fetchall()
        try:  # checked as a peer's snapshot would be
            accounts = msgspec.convert([(*r[:6], bool(r[6]), r[7]) for r in rows],
                                       list[Account])
        except msgspec.ValidationError as exc:
            raise StorageError(f"{self.path}: corrupt: an account row ({exc})") from None
        rows = self._db.execute("SELECT * FROM expiring").fetchall()
        try:
            expiring = msgspec.convert(rows, list[Expiring])
        except msgspec.ValidationError as exc:
            raise StorageError(f"{self.path}: corrupt: an expiring row ({exc})") from None
        return Ledger(accounts, store=self.stored_transfers(), stored_upto=applied,
                      expiring=expiring)

    def raise_promise(self, epoch: int, *, to: str | None = None) -> int:
        """Promise at least `epoch`, to `to` (None: to whichever node leads it first) -- a
        node seeded from a backup or from nothing: what it promised since is lost. Returns
        the promise."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (current,) = self._db.execute(
                "SELECT value FROM meta WHERE key = 'promised_epoch'").fetchone()
            if epoch > current:
                self._set_meta("promised_epoch", epoch)
                self._set_meta("promised_to", to)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return max(epoch, int(current))

    # ------------------------------------------------------------------ write

    def write(self, batch: WriteBatch) -> None:
        """Make `batch` durable in one transaction (fsync before returning)."""
        self.write_many((batch,))

    def write_many(self, batches: Sequence[WriteBatch]) -> None:
        """Make `batches` durable, in order, in one transaction: one fsync for all of them
        (group commit). A write that fails (an I/O error, a failed fsync, a full disk) breaks
        the store for good: StorageError now and for every later write. A failed fsync is
        never retried -- the kernel may already have dropped the pages it failed to write, so
        a retry that succeeds proves nothing -- the node stops, and a restart recovers from
        what is on disk."""
        if self._broken:
            raise StorageError(self._broken)
        batches = [batch for batch in batches if not batch.empty]
        if not batches:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for batch in batches:
                    for _ in self.write_steps(batch):
                        pass
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except Exception as exc:
            self._broken = (f"{self.path}: a write failed ({exc}); this node stops rather than "
                            "retry it (a failed fsync may have lost data for good): restart it "
                            "to recover from what is on disk")
            raise StorageError(self._broken) from None

    def write_steps(self, batch: WriteBatch) -> Iterator[str]:
        """The statements of one batch, yielding after each (tests crash between any two)."""
        if batch.stage is not None:
            if batch.stage.first:
                for statement in _STAGING:
                    self._db.execute(statement)
            self._db.executemany(
                _INSERT_TRANSFER.replace("INTO transfers", "INTO transfers_staged"),
                map(msgspec.structs.astuple, batch.stage.transfers))
            yield "stage"
        if batch.persist is not None:
            persist = batch.persist
            if persist.install is not None:
                yield from self._install_steps(persist)
            self._db.execute("DELETE FROM log WHERE idx > ?", (persist.keep_upto,))
            yield "truncate"
            rows = []
            for entry in persist.entries:
                payload = _payload_encoder.encode(entry.payload)
                rows.append((entry.index, entry.epoch, payload,
                             record_crc(entry.index, entry.epoch, payload, entry.ts),
                             entry.ts.wall_ms, entry.ts.logical))
            self._db.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?)", rows)
            yield "append"
            if persist.promised_epoch is not None:
                self._set_meta("promised_epoch", persist.promised_epoch)
                self._set_meta("promised_to", persist.promised_to)
                yield "promise"
        if batch.applied_index is not None:
            self._db.executemany(_INSERT_ACCOUNT, map(msgspec.structs.astuple,
                                                      batch.delta.accounts.values()))
            yield "accounts"
            self._db.executemany(_INSERT_TRANSFER, map(record_values, batch.delta.transfers))
            self._write_expiring(batch.delta.expiring)
            if batch.delta.transfers:
                self._add_transfers(batch.delta.transfers)
            yield "transfers"
            self._set_meta("applied_index", batch.applied_index)
            yield "applied"
        if batch.persist is not None and batch.persist.compact_upto is not None:
            self._db.execute("DELETE FROM log WHERE idx <= ?", (batch.persist.compact_upto,))
            self._set_meta("snapshot_index", batch.persist.compact_upto)
            self._set_meta("snapshot_epoch", batch.persist.compact_epoch or 0)
            ts = batch.persist.compact_ts or Timestamp(0, 0)
            self._set_meta("snapshot_wall_ms", ts.wall_ms)
            self._set_meta("snapshot_logical", ts.logical)
            yield "compact"

    def _install_steps(self, persist: Persist) -> Iterator[str]:
        """Replace log, ledger and markers by a snapshot (the rest of the batch follows it)."""
        snapshot = persist.install
        assert snapshot is not None
        self._db.execute("DELETE FROM log")
        self._db.execute("DELETE FROM accounts")
        self._db.execute("DELETE FROM expiring")
        if snapshot.staged is None:
            self._db.execute("DELETE FROM transfers")
        yield "install-clear"
        self._write_state(snapshot.state)
        if snapshot.staged is not None:  # the staged parts become the transfers
            self._db.execute("DROP TABLE transfers")
            self._db.execute("ALTER TABLE transfers_staged RENAME TO transfers")
            self._set_meta("transfer_count", snapshot.staged.count)
            self._set_meta("transfer_bytes", snapshot.staged.size)
            self._set_meta("transfer_digest", f"{snapshot.staged.digest:064x}")
        yield "install-ledger"
        self._set_meta("snapshot_index", snapshot.index)
        self._set_meta("snapshot_epoch", snapshot.last_epoch)
        self._set_meta("snapshot_wall_ms", snapshot.last_ts.wall_ms)
        self._set_meta("snapshot_logical", snapshot.last_ts.logical)
        self._set_meta("applied_index", snapshot.index)
        yield "install-markers"

    def _write_state(self, state: LedgerState) -> None:
        """The ledger tables, empty, become `state`."""
        self._db.executemany(_INSERT_ACCOUNT, map(msgspec.structs.astuple, state.accounts))
        self._db.executemany(_INSERT_EXPIRING, map(msgspec.structs.astuple, state.expiring))
        self._db.executemany(_INSERT_TRANSFER, map(msgspec.structs.astuple, state.transfers))
        self._set_meta("transfer_count", 0)
        self._set_meta("transfer_bytes", 0)
        self._set_meta("transfer_digest", f"{0:064x}")
        self._add_transfers([record_of(t) for t in state.transfers])

    def _write_expiring(self, changed: Mapping[TransferId, Expiring | None]) -> None:
        """Pending transfers that began or stopped waiting to expire."""
        if not changed:
            return
        self._db.executemany(_INSERT_EXPIRING, [msgspec.structs.astuple(e)
                                                for e in changed.values() if e is not None])
        self._db.executemany("DELETE FROM expiring WHERE id = ?",
                             [(i,) for i, e in changed.items() if e is None])

    def _add_transfers(self, records: Sequence[TransferRecord]) -> None:
        """Count rows just inserted in the transfers table into its count, size and digest."""
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'transfer_count'",
                         (len(records),))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'transfer_bytes'",
                         (sum(map(record_size, records)),))
        (current,) = self._db.execute(
            "SELECT value FROM meta WHERE key = 'transfer_digest'").fetchone()
        total = _digest_value(self.path, current) + sum(map(record_hash, records))
        self._set_meta("transfer_digest", f"{total % MODULUS:064x}")

    def _set_meta(self, key: str, value: int | str | None) -> None:
        self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    async def write_async(self, batches: Sequence[WriteBatch]) -> None:
        """write_many in the store's worker thread (the event loop goes on meanwhile)."""
        # Not abandon_on_cancel: a cancelled caller still waits for the commit to finish, so
        # nothing is ever acknowledged or applied on the assumption of a write in flight.
        await trio.to_thread.run_sync(self.write_many, batches, limiter=self._writer)
