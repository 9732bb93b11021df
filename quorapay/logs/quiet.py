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
    count: int = 0


@dataclass(slots=True)
class QuietLog:
    """At most one line per key per `interval` seconds.

    `warning` is for events: those not logged are counted in the next line. `state` is for a
    condition that may flap (a clock alarm raised and cleared): changes within the interval are
    held back, and `flush` -- call it often -- logs the latest one once the interval is over,
    so the log always ends by telling the state the node is in.
    """

    logger: logging.Logger
    interval: float = 10.0
    now: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _quiet: dict[str, int] = field(default_factory=dict)
    _held: dict[str, _Held] = field(default_factory=dict)

    def warning(self, key: str, message: str, *args: object) -> None:
        if not self._due(key):
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        skipped = self._quiet.pop(key, 0)
        suffix = f" ({skipped} more like it not logged)" if skipped else ""
        self._emit(key, logging.WARNING, message + suffix, args, {})

    def state(self, key: str, level: int, message: str, *args: object,
              fields: dict[str, Any] | None = None) -> None:
        held = self._held.pop(key, None)
        count = held.count + 1 if held is not None else 0
        self._held[key] = _Held(level, message, args, fields or {}, count)
        self.flush(key)

    def flush(self, key: str | None = None) -> None:
        """Log held states whose interval is over (of `key`, or of every key)."""
        for name in [key] if key is not None else list(self._held):
            held = self._held.get(name)
            if held is None or not self._due(name):
                continue
            del self._held[name]
            suffix = f" ({held.count} earlier changes in {self.interval:g} s not logged)" \
                if held.count else ""
            self._emit(name, held.level, held.message + suffix, held.args, held.fields)

    def _due(self, key: str) -> bool:
        return key not in self._last or self.now() - self._last[key] >= self.interval

    def _emit(self, key: str, level: int, message: str, args: tuple[object, ...],
              fields: dict[str, Any]) -> None:
        self._last[key] = self.now()
        self.logger.log(level, message, *args, extra={"fields": fields} if fields else None)
