"""Reading the logs of a cluster's processes and merging them by time (`quorapay logs`).

A record is a line in either format (`quorapay.logs.lines`) with the lines that follow it and
are not records themselves (a traceback). Lines before any record -- a process that failed
before it set up logging -- become a record of their own, at the time of the next record or,
if none follows, of the file's last change.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from quorapay.logs.lines import LogLine, parse_line, utc_time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CRASH = "Traceback (most recent call last)"


class LogsError(ValueError):
    """An argument to `quorapay logs` that cannot be used."""


@dataclass(slots=True)
class _Reader:
    """Turns lines of one process's log into records; `held` waits for the lines after it."""

    name: str
    held: LogLine | None = None
    orphans: list[str] = field(default_factory=list)

    def feed(self, text: str) -> Iterator[LogLine]:
        line = parse_line(text)
        if line is None:
            if self.held is not None:
                self.held = msgspec.structs.replace(self.held,
                                                    message=f"{self.held.message}\n{text}")
            elif text.strip():
                self.orphans.append(text)
            return
        if self.held is not None:
            yield self.held
        if self.orphans:
            yield self._orphan_record(line.time)
        self.held = line

    def end(self, time: str) -> Iterator[LogLine]:
        """Everything still held: the log has no more lines (for now)."""
        if self.held is not None:
            yield self.held
            self.held = None
        if self.orphans:
            yield self._orphan_record(time)

    def _orphan_record(self, time: str) -> LogLine:
        text, self.orphans = "\n".join(self.orphans), []
        return LogLine(time=time, node=self.name, level="-", logger="stderr", message=text)


def read_records(name: str, path: Path) -> Iterator[LogLine]:
    """Every record in one process's log file, in file order."""
    reader = _Reader(name)
    with path.open(encoding="utf-8", errors="replace") as file:
        for text in file:
            if not text.endswith("\n"):
                break  # being written now: not a line yet
            yield from reader.feed(text[:-1])
    yield from reader.end(utc_time(path.stat().st_mtime))


def merged(sources: dict[str, Path], *, since: str = "", level: str = "DEBUG"
           ) -> Iterator[LogLine]:
    """The records of every source, merged by time, from `since` on, at `level` or above."""
    streams = [read_records(name, path) for name, path in sources.items() if path.exists()]
    return keep(heapq.merge(*streams, key=lambda line: line.time), since=since, level=level)


def keep(lines: Iterable[LogLine], *, since: str, level: str) -> Iterator[LogLine]:
    """Records from `since` on, at `level` or above; a crash (a traceback, whatever the level
    of the record it follows) and lines that are not records are always kept."""
    least = LEVELS.index(level)
    for line in lines:
        if line.time >= since and (line.level not in LEVELS or LEVELS.index(line.level) >= least
                                   or _CRASH in line.message):
            yield line


class Tail:
    """The records of a file as it grows, from its start; starts over if the file is replaced
    or truncated."""

    def __init__(self, name: str, path: Path) -> None:
        self._path = path
        self._reader = _Reader(name)
        self._offset = self._inode = 0
        self._partial = b""

    def records(self) -> list[LogLine]:
        """Records completed since the last call (the latest is held until the next line, or
        released now if nothing followed it)."""
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return []
        if self._inode not in (0, stat.st_ino) or stat.st_size < self._offset:
            self._offset, self._partial = 0, b""
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return list(self._reader.end(utc_time(stat.st_mtime)))
        with self._path.open("rb") as file:
            file.seek(self._offset)
            data = self._partial + file.read()
            self._offset = file.tell()
        *complete, self._partial = data.split(b"\n")
        out: list[LogLine] = []
        for raw in complete:
            out.extend(self._reader.feed(raw.decode("utf-8", errors="replace")))
        return out


def since_time(text: str, now: datetime | None = None) -> str:
    """`--since`: a duration ago ("90s", "5m", "2h", "1d") or an ISO 8601 time (UTC unless it
    says otherwise), as the text a record's time compares with."""
    text = text.strip()
    match = _AGO.fullmatch(text)
    try:
        if match is not None:
            ago = timedelta(seconds=float(match[1]) * _UNIT[match[2]])
            return utc_time(((now or datetime.now(UTC)) - ago).timestamp())
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LogsError(f"--since {text!r} is neither a duration (90s, 5m, 2h, 1d) nor an ISO "
                        "8601 time (2026-11-29T12:00:00)") from None
    except (OverflowError, OSError):
        raise LogsError(f"--since {text!r} is out of range") from None
    try:
        return utc_time((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    except (ValueError, OverflowError, OSError):
        raise LogsError(f"--since {text!r} is out of range") from None
