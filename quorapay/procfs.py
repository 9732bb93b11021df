"""What Linux's /proc tells about a process."""

from __future__ import annotations

import os


def resident_bytes(pid: int) -> int:
    """A process's resident memory (/proc/PID/statm), or 0 if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
