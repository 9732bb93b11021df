"""Private files: everything Quorapay keeps on disk is for its own user only.

Data, secrets, logs and run directories are 0700 and the files in them 0600, whatever the umask
of whoever starts a command: directories are created (or tightened) with `private_dir`, files
written with `write_private`, and processes Quorapay starts run with `PRIVATE_UMASK`, so what
they create (SQLite's files, ZooKeeper's) is private too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700; tighten it if it exists more open."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Write atomically (a reader never sees half a file) as 0600, in a private directory."""
    private_dir(path.parent)
    raw = data.encode() if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Within: files and directories are created for this user only (children inherit it)."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
