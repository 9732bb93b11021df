"""Rate limits for log lines that can repeat without bound (a flooding peer, a flapping clock)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Held:
    level: int
    message: str
    args: tuple[object, ...]
    fields: dict[str, Any]
    event: bool  # a recurring event (counted), not a state (that changed)
    count: int = 0  # earlier ones not logged


@dataclass(slots=True)
class QuietLog:
    """At most one line per key per `interval` seconds.

    `warning` is for recurring events, `state` for a condition that may flap (a clock alarm
    raised and cleared). The first line for a key is logged at once; later ones within the
    interval are held back, the latest replacing the one before, and `flush` -- call it
    often -- logs the latest once the interval is over, saying how many were not logged. So
    the log always ends by telling the last event and the state the node is in.
    """

    logger: logging.Logger
    interval: float = 10.0
    now: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, _Held] = field(default_factory=dict)

    def warning(self, key: str, message: str, *args: object) -> None:
        self._hold(key, _Held(logging.WARNING, message, args, {}, event=True))

    def state(self, key: str, level: int, message: str, *args: object,
              fields: dict[str, Any] | None = None) -> None:
        self._hold(key, _Held(level, message, args, fields or {}, event=False))

    def flush(self, key: str | None = None) -> None:
        """Log held lines whose interval is over (of `key`, or of every key)."""
        for name in [key] if key is not None else list(self._held):
            held = self._held.get(name)
            if held is None or not self._due(name):
                continue
            del self._held[name]
            what = "more like it" if held.event else "earlier changes"
            suffix = f" ({held.count} {what} in {self.interval:g} s not logged)" \
                if held.count else ""
            self._last[name] = self.now()
            self.logger.log(held.level, held.message + suffix, *held.args,
                            extra={"fields": held.fields} if held.fields else None)

    def _hold(self, key: str, latest: _Held) -> None:
        before = self._held.get(key)
        latest.count = before.count + 1 if before is not None else 0
        self._held[key] = latest
        self.flush(key)

    def _due(self, key: str) -> bool:
        return key not in self._last or self.now() - self._last[key] >= self.interval
