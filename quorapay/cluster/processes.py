"""Background processes tracked by pid files under the run directory.

A pid counts as ours only if /proc/<pid>/cmdline still carries our marker, so a stale pid file
whose number was reused by another program is never signalled; and a process carrying our marker
is found by scanning /proc even if its pid file was lost. Stopping follows trio's escalation:
SIGTERM, wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from quorapay.files import FILE_MODE, private_dir, private_umask, write_private


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracked:
    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string that must appear in the process's command line

    def pid(self) -> int | None:
        """The pid of our running process, or None (clearing a pid file whose process is gone)."""
        pids = self.pids()
        return pids[0] if pids else None

    def pids(self) -> list[int]:
        """Every live process carrying our marker: the pid file's first, then any other."""
        found: list[int] = []
        try:
            recorded = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            recorded = None
        if recorded is not None:
            cmdline = _cmdline(recorded)
            if cmdline is None:
                self.pid_file.unlink(missing_ok=True)  # gone: the file is stale
            elif self.marker in cmdline:
                found.append(recorded)
        found += [pid for pid in _scan(self.marker) if pid not in found]
        return found

    def start(self, argv: list[str], *, env: dict[str, str] | None = None) -> int:
        """Start detached (own session), output appended to the log file; record the pid."""
        private_dir(self.log_file.parent)
        private_dir(self.pid_file.parent)
        # posix_spawn, not Popen: a detached process that outlives us has no Popen to collect;
        # it inherits the private umask, so whatever it creates is for this user only
        with private_umask():
            pid = os.posix_spawn(argv[0], argv, dict(os.environ if env is None else env),
                                 setsid=True, file_actions=[
                                     (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, str(self.log_file),
                                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE),
                                     (os.POSIX_SPAWN_DUP2, 1, 2)])
        write_private(self.pid_file, f"{pid}\n")
        return pid

    def signal(self, signum: signal.Signals) -> int | None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signum)
        return pid

    def stop(self, *, grace: float = 10.0) -> bool:
        """SIGTERM, wait up to `grace`, then SIGKILL. True if a process was stopped."""
        pids = self.pids()
        for pid in pids:
            for signum, wait in ((signal.SIGCONT, 0.0), (signal.SIGTERM, grace),
                                 (signal.SIGKILL, 5.0)):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
                if wait and wait_gone(pid, wait):
                    break
        self.pid_file.unlink(missing_ok=True)
        return bool(pids)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if _cmdline(pid) is None:
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child (tests): collect the zombie


def _scan(marker: str) -> list[int]:
    """Pids of live processes (not this one) whose command line carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmdline = _cmdline(int(entry.name))
            if cmdline is not None and marker in cmdline:
                found.append(int(entry.name))
    return sorted(found)


def _cmdline(pid: int) -> str | None:
    """The command line of a live, non-zombie process, or None."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        if status.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None
