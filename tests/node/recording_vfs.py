"""A SQLite VFS (apsw) that passes every call through to the real files and records each write,
truncation, fsync and deletion, so that a test can build what a crash at any point could have
left on disk: what was fsynced, with or without the writes after it.

A crash of the process (or the machine) keeps, of each file, everything up to its last fsync; of
the writes after it, any subset the kernel had flushed. These images take the two ends: none of
them, and every one of them (a prefix of the run's writes, in order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from quorapay.sim.disk import ApswConnection


@dataclass(frozen=True, slots=True)
class Op:
    file: str  # the file's name (in the one folder the store uses)
    kind: str  # write | truncate | sync | delete
    offset: int = 0  # write: where; truncate: the new size
    data: bytes = b""


class RecordingVFS(apsw.VFS):
    """Register once per test; connections opened with `vfs=vfs.name` are recorded."""

    def __init__(self) -> None:
        self.name = f"recording-{uuid.uuid4().hex[:8]}"
        self.ops: list[Op] = []
        self.failing_syncs = 0  # fsyncs from now on that fail (after `syncs_before_failing`)
        self.syncs_before_failing = 0
        super().__init__(self.name, "")

    def fail_fsync(self, *, after: int, times: int = 1) -> None:
        """Let `after` more fsyncs succeed, then fail `times` of them (EIO, as a disk does)."""
        self.syncs_before_failing, self.failing_syncs = after, times

    def sync_fails(self) -> bool:
        if self.syncs_before_failing:
            self.syncs_before_failing -= 1
            return False
        if self.failing_syncs:
            self.failing_syncs -= 1
            return True
        return False

    def xOpen(self, name: Any, flags: Any) -> RecordingFile:
        return RecordingFile(self, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        self.ops.append(Op(Path(filename).name, "delete"))
        super().xDelete(filename, syncdir)

    def connect(self, path: Path) -> ApswConnection:
        """A `Store` connection over this VFS (its `connect` argument)."""
        return ApswConnection(apsw.Connection(str(path), vfs=self.name))

    def images(self, upto: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """The files after the first `upto` operations: (only what was fsynced, everything)."""
        durable: dict[str, bytes] = {}
        written: dict[str, bytes] = {}
        for op in self.ops[:upto]:
            if op.kind == "delete":
                durable.pop(op.file, None)
                written.pop(op.file, None)
            elif op.kind == "sync":
                durable[op.file] = written.get(op.file, b"")
            else:
                written[op.file] = _apply(written.get(op.file, b""), op)
        return durable, written


def _apply(content: bytes, op: Op) -> bytes:
    if op.kind == "truncate":
        return content[:op.offset]
    padded = content.ljust(op.offset, b"\0")
    return padded[:op.offset] + op.data + padded[op.offset + len(op.data):]


class RecordingFile(apsw.VFSFile):
    def __init__(self, vfs: RecordingVFS, name: Any, flags: Any) -> None:
        self._vfs = vfs
        self._ops = vfs.ops
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name
        self._file = Path(filename).name if filename else ""
        super().__init__("", name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        self._ops.append(Op(self._file, "write", offset, bytes(data)))
        super().xWrite(data, offset)

    def xTruncate(self, newsize: int) -> None:
        self._ops.append(Op(self._file, "truncate", newsize))
        super().xTruncate(newsize)

    def xSync(self, flags: int) -> None:
        if self._vfs.sync_fails():
            raise apsw.IOError("injected: fsync failed")  # nothing is known to be durable
        self._ops.append(Op(self._file, "sync"))
        super().xSync(flags)


def write_image(folder: Path, files: dict[str, bytes]) -> None:
    """Lay the files of an image out in `folder` (no shared-memory index: SQLite rebuilds it
    from the WAL, as after any crash)."""
    folder.mkdir(parents=True)
    for name, content in files.items():
        if not name.endswith("-shm"):
            (folder / name).write_bytes(content)
