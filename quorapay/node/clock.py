"""A node's wall clock: the machine's, moved by the cluster file's offset and drift and by clock
faults injected at runtime. Only wall-clock readings move; timers use the monotonic clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import trio

from quorapay.clock.overrides import read_skew
from quorapay.clock.skew import ClockFaultError, ClockSkew

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


class WallClock:
    def __init__(self, base: ClockSkew, *, system: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.base = base  # what the cluster file says; a cleared fault returns here
        self._system = system
        self._monotonic = monotonic
        self.skew = base
        self._since = monotonic()

    def set(self, skew: ClockSkew) -> None:
        self.skew = skew
        self._since = self._monotonic()

    def read_ms(self) -> int:
        """Milliseconds since the Unix epoch, as this node believes."""
        skew = self.skew
        elapsed = self._monotonic() - self._since
        ms = self._system() * 1000 + skew.offset_ms + skew.drift_ppm * elapsed / 1000
        if skew.strobe_ms:
            phase = int(elapsed / skew.strobe_period_s) % 2
            ms += skew.strobe_ms if phase == 0 else -skew.strobe_ms
        return int(ms)

    def offset_ms(self) -> int:
        """How far this clock is from the machine's right now."""
        return self.read_ms() - int(self._system() * 1000)


async def follow_clock_faults(clock: WallClock, path: Path) -> None:
    """Apply the clock fault in `path` whenever it changes; back to the base when removed."""
    seen: tuple[int, int] | None = None
    while True:
        try:
            stat = path.stat()  # noqa: ASYNC240  (a local stat: microseconds, no thread)
            current: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            current = None
        if current != seen:
            seen = current
            _apply(clock, path)
        await trio.sleep(POLL_SECONDS)


def _apply(clock: WallClock, path: Path) -> None:
    try:
        skew = read_skew(path)
    except ClockFaultError as exc:
        log.error("ignoring a clock fault: %s", exc)
        return
    clock.set(skew if skew is not None else clock.base)
    log.warning("wall clock now: %s", clock.skew.describe())
