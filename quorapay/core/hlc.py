"""Hybrid logical clocks (Kulkarni et al., 2014): timestamps that follow causality and stay
close to wall-clock time.

A timestamp is (wall_ms, logical): the largest wall-clock reading (milliseconds since the Unix
epoch) this node has seen, its own or carried by a message, and a counter that orders events
within the same wall_ms. The rules:

* local or send event:  wall_ms = max(wall_ms, now); logical = logical + 1 if wall_ms did not
  move, else 0;
* receive event:        wall_ms = max(wall_ms, remote.wall_ms, now); logical bumped past every
  timestamp that had that wall_ms;
* a remote timestamp more than `max_offset_ms` ahead of the local wall clock is refused: not
  adopted, so one wild clock cannot drag every timestamp into the future.

The clock never goes back, whatever the wall clock does; how far its wall_ms can run ahead of
the local wall clock is bounded by the largest clock offset it accepted.
"""

from __future__ import annotations

import msgspec

from quorapay.core.bounds import Counter


class Timestamp(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """A hybrid logical clock value; compares by (wall_ms, logical)."""

    wall_ms: Counter
    logical: Counter

    def __str__(self) -> str:
        return f"{self.wall_ms}ms+{self.logical}"


ZERO = Timestamp(0, 0)


class HybridClock:
    """One node's hybrid logical clock. Pure: every rule takes the wall-clock reading as input."""

    def __init__(self, *, max_offset_ms: int, start: Timestamp = ZERO) -> None:
        self.max_offset_ms = max_offset_ms
        self.last = start

    def now(self, wall_ms: int) -> Timestamp:
        """A local or send event: a timestamp above every one this clock issued or saw."""
        last = self.last
        if wall_ms > last.wall_ms:
            self.last = Timestamp(wall_ms, 0)
        else:
            self.last = Timestamp(last.wall_ms, last.logical + 1)
        return self.last

    def too_far_ahead(self, remote: Timestamp, wall_ms: int) -> bool:
        return remote.wall_ms - wall_ms > self.max_offset_ms

    def observe(self, remote: Timestamp, wall_ms: int) -> bool:
        """A receive event. False, changing nothing, if `remote` is too far ahead of `wall_ms`."""
        if self.too_far_ahead(remote, wall_ms):
            return False
        self.witness(remote)
        self.now(wall_ms)
        return True

    def witness(self, stamped: Timestamp) -> None:
        """Move past a timestamp already in the log, however far ahead: whatever this clock
        issues next must order after it."""
        if stamped > self.last:
            self.last = stamped
