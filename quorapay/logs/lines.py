"""One log line, in either format, and how records are written as lines.

Text: `2026-11-29T12:35:11.123Z n1 INFO quorapay.node.roles: message key=value ...`.
JSON: `{"time": "2026-11-29T12:35:11.123Z", "node": "n1", "level": "INFO", "logger": ...,
"message": ..., "fields": {...}}`. Both carry UTC times to the millisecond, so that the logs of
nodes on different hosts merge by time (as far as their clocks agree). A record's `fields` are
structured facts about it (a role change's epoch, cause and duration), for machines: the text
format leaves them out (its message says the same for people).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

FORMATS = ("text", "json")
_TEXT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) ([A-Z]+) (\S+): (.*)")


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    time: str  # ISO 8601, UTC, milliseconds: sorts as text
    node: str
    level: str
    logger: str
    message: str
    fields: dict[str, Any] = {}

    def text(self) -> str:
        return f"{self.time} {self.node} {self.level} {self.logger}: {self.message}"


def utc_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_line(text: str) -> LogLine | None:
    """A line written by `LineFormatter`, or None (a continuation: a traceback, a stray print)."""
    if text.startswith("{"):
        try:
            return msgspec.json.decode(text, type=LogLine)
        except msgspec.DecodeError:
            return None
    match = _TEXT.fullmatch(text)
    if match is None:
        return None
    time, node, level, logger, message = match.groups()
    return LogLine(time=time, node=node, level=level, logger=logger, message=message)


class LineFormatter(logging.Formatter):
    """Formats records of the process `node` as text or JSON lines."""

    def __init__(self, node: str, fmt: str = "text") -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
        self._node = node
        self._json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        line = LogLine(time=utc_time(record.created), node=self._node, level=record.levelname,
                       logger=record.name, message=record.getMessage(),
                       fields=getattr(record, "fields", {}))
        if not self._json:
            text = line.text()
            if record.exc_info:
                text += "\n" + self.formatException(record.exc_info)
            return text
        if record.exc_info:
            line = msgspec.structs.replace(
                line, fields={**line.fields, "exception": self.formatException(record.exc_info)})
        return msgspec.json.encode(line).decode()


def configure(node: str, *, level: str = "INFO", fmt: str = "text") -> None:
    """Send this process's log records to stderr (the supervisor's log file), one per line."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter(node, fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # we report ZooKeeper states ourselves
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)
