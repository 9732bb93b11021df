"""The simulated world: one seeded random generator, one clock, one queue of events.

Everything that happens is a callback scheduled at a simulated time; ties run in scheduling
order. Given a seed, a run is exactly reproducible, and its trace hash -- over every event's time,
kind and target -- proves it. Hashing reads the events and changes nothing, so a world that skips
it (a tenth faster) runs exactly the same events.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any


class World:
    def __init__(self, seed: int, *, trace: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.steps = 0
        self._queue: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self._trace = hashlib.sha256() if trace else None

    def at(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) `delay` simulated seconds from now."""
        self._seq += 1
        heapq.heappush(self._queue, (self.now + max(delay, 0.0), self._seq, fn, args))

    def step(self) -> bool:
        """Run the next event. False when nothing is left to happen."""
        if not self._queue:
            return False
        self.now, _, fn, args = heapq.heappop(self._queue)
        self.steps += 1
        if self._trace is not None:
            self._trace.update(f"{self.now:.9f}|{_describe(fn, args)}\n".encode())
        fn(*args)
        return True

    @property
    def trace_hash(self) -> str | None:
        """None when the world was made without tracing."""
        return self._trace.hexdigest()[:16] if self._trace is not None else None


def _describe(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """An event, briefly: the callback and its simple arguments, callbacks by name."""
    parts = [fn.__qualname__]
    for arg in args[:4]:
        if isinstance(arg, str | int | float | bool):
            parts.append(str(arg))
        elif callable(arg):
            parts.append(getattr(arg, "__qualname__", type(arg).__name__))
    return "|".join(parts)
