"""A simulated OS process: the unit that crashes, restarts, pauses and resumes.

Everything addressed to a process -- its timers, messages to it -- goes through `call` with the
incarnation it was meant for. A crash starts a new incarnation, so nothing meant for the dead one
ever runs (TCP connections and timers die with a process). A paused process (SIGSTOP) runs
nothing; on resume it catches up on what arrived meanwhile, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quorapay.sim.world import World


class Process:
    def __init__(self, world: World, name: str) -> None:
        self._world = world
        self.name = name
        self.incarnation = 0
        self.up = False
        self.paused = False
        self._deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def start(self) -> None:
        self.incarnation += 1
        self.up, self.paused, self._deferred = True, False, []

    def crash(self) -> None:
        self.incarnation += 1
        self.up, self.paused, self._deferred = False, False, []

    def pause(self) -> None:
        self.paused = self.up

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        deferred, self._deferred = self._deferred, []
        for fn, args in deferred:
            if self.up and not self.paused:
                fn(*args)
            else:
                self._deferred.append((fn, args))

    def schedule(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """A timer of this incarnation."""
        self._world.at(delay, self.call, self.incarnation, fn, *args)

    def call(self, incarnation: int, fn: Callable[..., Any], *args: Any) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        if self.paused:
            self._deferred.append((fn, args))
            return
        fn(*args)
