"""Ctrl-C as a request to stop: long work wraps up instead of dying.

The first SIGINT sets `Interrupt.requested`: work stops starting new things, finishes or records
what is in flight, undoes the faults it injected, and reports what it did. `grace` seconds later
every scope made by `Interrupt.work()` is cancelled, for whatever would not stop by itself. A
second SIGINT raises KeyboardInterrupt at once. Library functions take an `Interrupt` and default
to `NEVER`, one that never fires.
"""

from __future__ import annotations

import signal
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

GRACE = 3.0  # seconds between a request and cancelling what did not stop


class Interrupt:
    def __init__(self) -> None:
        self.requested = trio.Event()
        self._scopes: weakref.WeakSet[trio.CancelScope] = weakref.WeakSet()
        self._cancelled = False

    @property
    def happened(self) -> bool:
        return self.requested.is_set()

    def work(self) -> trio.CancelScope:
        """A new scope to run interruptible work in: cancelled `grace` after a request."""
        scope = trio.CancelScope()
        if self._cancelled:
            scope.cancel()
        self._scopes.add(scope)
        return scope

    def cancel_work(self) -> None:
        self._cancelled = True
        for scope in list(self._scopes):
            scope.cancel()


NEVER = Interrupt()  # for callers that do not handle Ctrl-C (tests, libraries)


@asynccontextmanager
async def on_interrupt(grace: float = GRACE) -> AsyncIterator[Interrupt]:
    """Within: Ctrl-C requests a stop (see the module); the caller checks `happened` after."""
    interrupt = Interrupt()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def cancel_later() -> None:
                await trio.sleep(grace)
                interrupt.cancel_work()

            async def watch() -> None:
                async for _ in signals:
                    if interrupt.happened:
                        raise KeyboardInterrupt
                    interrupt.requested.set()
                    nursery.start_soon(cancel_later)
            nursery.start_soon(watch)
            try:
                yield interrupt
            finally:
                nursery.cancel_scope.cancel()
