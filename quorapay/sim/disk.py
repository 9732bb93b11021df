"""A simulated node disk under the real store: a SQLite VFS (apsw) that keeps files in memory
and loses, on a crash, what a real kernel could lose.

Each file has what its last fsync made durable and the writes (and truncations) since. A crash
keeps the durable content and, of the writes after it, a random subset (the kernel flushes dirty
pages in any order), some of them torn (only a prefix of their 512-byte sectors reached the
disk). SQLite's WAL checksums must make sense of whatever is left; the store's record checksums
catch what they do not.

Faults a test or the nemesis arms on a disk:

* `die_after(n)` -- the process dies inside a write: the n-th file operation from now never
  happens, nor anything after it (the caller then crashes the node, `died` tells it so);
* `fail_syncs(n)` -- the next n fsyncs fail (EIO); nothing they covered is known durable;
* `full` -- writes fail with SQLITE_FULL while it is set.

Every open of the store (each start of the node) gets its own VFS registration; a crash retires
it, so the dead process's connection -- closed later, or collected -- can no longer touch a file.
SQLite's shared-memory WAL index is not modelled: the store opens with locking_mode=EXCLUSIVE
here, which keeps that index in the process's memory (it is rebuilt from the WAL after a crash,
as on a real disk).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from quorapay.node.storage import Connection

SECTOR = 512
_registrations = itertools.count(1)


@dataclass(slots=True)
class _File:
    data: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)  # as of the last fsync
    unsynced: list[tuple[int, bytes | None]] = field(default_factory=list)  # (offset, data)
    # data None: a truncation to `offset`


class SimDisk:
    """One node's disk: its files, what is durable, and the faults armed on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.files: dict[str, _File] = {}
        self.full = False
        self.died = False  # the process died inside a write (die_after)
        self.injected = 0  # faults that fired (a failed write is expected, not a finding)
        self._die_in: int | None = None
        self._failing_syncs = 0
        self._vfs: _SimVFS | None = None

    # ------------------------------------------------------------------ faults

    def die_after(self, operations: int) -> None:
        self._die_in = operations

    def fail_syncs(self, times: int) -> None:
        self._failing_syncs = times

    def disarm(self) -> None:
        self._die_in, self._failing_syncs, self.full = None, 0, False

    @property
    def armed(self) -> bool:
        return self._die_in is not None or self._failing_syncs > 0 or self.full

    # ------------------------------------------------------------------ life

    def connect(self, path: Path) -> Connection:
        """A connection of a new incarnation of the node (the store's `connect`)."""
        self.retire()
        self._vfs = _SimVFS(self)
        db = apsw.Connection(str(path), vfs=self._vfs.vfsname)
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        return ApswConnection(db)

    def close(self) -> None:
        """The simulation is over: let go of the VFS registration (the files stay)."""
        vfs = self._vfs
        self.retire()
        if vfs is not None:
            vfs.unregister()

    def retire(self) -> None:
        """The process holding the disk is gone: its connection can no longer touch a file."""
        if self._vfs is not None:
            self._vfs.dead = True
            self._vfs = None

    def crash(self, rng: random.Random) -> None:
        """Lose what a crash could lose: of every file, what its last fsync did not cover, in
        any subset, some writes torn."""
        self.retire()
        self.disarm()
        self.died = False
        for file in self.files.values():
            content = bytearray(file.durable)
            for offset, data in file.unsynced:
                if data is None:
                    if rng.random() < 0.5:
                        del content[offset:]
                    continue
                roll = rng.random()
                if roll < 0.4:
                    continue  # never reached the disk
                if roll < 0.5 and len(data) > SECTOR:
                    data = data[:SECTOR * rng.randrange(1, -(-len(data) // SECTOR))]  # torn
                _write(content, offset, data)
            file.data, file.durable, file.unsynced = content, bytearray(content), []

    # ------------------------------------------------------------------ file operations

    def _operation(self) -> None:
        """Count one operation towards an armed death; after it, the process is gone."""
        if self._die_in is not None:
            if self._die_in <= 0:
                self._die_in, self.died = None, True
                self.injected += 1
                self.retire()
            else:
                self._die_in -= 1
        if self.died:
            raise apsw.IOError("simulated crash: the process died in this write")

    def write(self, file: _File, data: bytes, offset: int) -> None:
        self._operation()
        if self.full:
            self.injected += 1
            raise apsw.FullError("simulated: the disk is full")
        _write(file.data, offset, data)
        file.unsynced.append((offset, data))

    def truncate(self, file: _File, size: int) -> None:
        self._operation()
        del file.data[size:]
        file.unsynced.append((size, None))

    def sync(self, file: _File) -> None:
        self._operation()
        if self._failing_syncs:
            self._failing_syncs -= 1
            self.injected += 1
            raise apsw.IOError("simulated: fsync failed (EIO)")
        for offset, data in file.unsynced:  # replay, not copy: files grow, syncs are small
            if data is None:
                del file.durable[offset:]
            else:
                _write(file.durable, offset, data)
        file.unsynced = []


def _write(content: bytearray, offset: int, data: bytes) -> None:
    if len(content) < offset:
        content.extend(bytes(offset - len(content)))
    content[offset:offset + len(data)] = data


class _SimVFS(apsw.VFS):
    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk
        self.dead = False
        self.vfsname = f"sim-{disk.name}-{next(_registrations)}"
        super().__init__(self.vfsname, "")

    def xOpen(self, name: Any, flags: list[int]) -> Any:  # a VFSFile by its methods
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name
        if not filename:  # a temporary file: never durable, never recovered
            return _SimFile(self, _File())
        file = self.disk.files.setdefault(filename, _File())
        return _SimFile(self, file)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        if not self.dead:
            self.disk.files.pop(filename, None)

    def xAccess(self, pathname: str, flags: int) -> bool:
        return pathname in self.disk.files

    def xFullPathname(self, name: str) -> str:
        return name


class _SimFile:
    """An open file of the simulated disk; inert once its process is dead."""

    def __init__(self, vfs: _SimVFS, file: _File) -> None:
        self._vfs, self._file, self._disk = vfs, file, vfs.disk

    def xRead(self, amount: int, offset: int) -> bytes:
        return bytes(self._file.data[offset:offset + amount])

    def xWrite(self, data: Any, offset: int) -> None:
        if not self._vfs.dead:
            self._disk.write(self._file, bytes(data), offset)

    def xTruncate(self, newsize: int) -> None:
        if not self._vfs.dead:
            self._disk.truncate(self._file, newsize)

    def xSync(self, flags: int) -> None:
        if not self._vfs.dead:
            self._disk.sync(self._file)

    def xFileSize(self) -> int:
        return len(self._file.data)

    def xLock(self, level: int) -> None:
        pass

    def xUnlock(self, level: int) -> None:
        pass

    def xCheckReservedLock(self) -> bool:
        return False

    def xFileControl(self, op: int, ptr: int) -> bool:
        return False

    def xSectorSize(self) -> int:
        return SECTOR

    def xDeviceCharacteristics(self) -> int:
        return 0

    def xClose(self) -> None:
        pass


@dataclass(slots=True)
class ApswConnection:
    """An apsw connection with the calls of `sqlite3`'s that the store makes (a `Connection`
    of `quorapay.node.storage` over any apsw VFS)."""

    db: apsw.Connection

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.db.execute(sql, parameters)

    def executemany(self, sql: str, rows: Any, /) -> Any:
        return self.db.executemany(sql, list(rows))

    def executescript(self, script: str, /) -> Any:
        return self.db.execute(script)

    def close(self) -> None:
        self.db.close()
