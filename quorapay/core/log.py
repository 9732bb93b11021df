"""The replica's view of the replicated log: contiguous entries from index 1.

Index 0 is a sentinel with epoch 0, so (prev_index=0, prev_epoch=0) always matches. Pure
bookkeeping: persistence is the driver's job, told through `Ready.persist`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from quorapay.core.errors import LocalError
from quorapay.core.types import Epoch, LogEntry, LogIndex


class Log:
    def __init__(self, entries: Iterable[LogEntry] = ()) -> None:
        self._entries: list[LogEntry] = []
        for entry in entries:
            self.append(entry)

    @property
    def last_index(self) -> LogIndex:
        return LogIndex(len(self._entries))

    @property
    def last_epoch(self) -> Epoch:
        return self._entries[-1].epoch if self._entries else Epoch(0)

    def epoch_at(self, index: int) -> Epoch | None:
        """The epoch of the entry at `index`, 0 for the sentinel, None past the end."""
        if index == 0:
            return Epoch(0)
        if 1 <= index <= len(self._entries):
            return self._entries[index - 1].epoch
        return None

    def entry(self, index: int) -> LogEntry:
        return self._entries[index - 1]

    def slice(self, first: int, last: int) -> tuple[LogEntry, ...]:
        """Entries first..last inclusive (clipped to the log)."""
        return tuple(self._entries[max(first, 1) - 1 : max(last, 0)])

    def take(self, first: int, max_weight: int) -> tuple[LogEntry, ...]:
        """Entries from `first` up to about `max_weight` commands; at least one if any exist."""
        taken: list[LogEntry] = []
        weight = 0
        for entry in self._entries[max(first, 1) - 1 :]:
            if taken and weight + entry.weight > max_weight:
                break
            taken.append(entry)
            weight += entry.weight
        return tuple(taken)

    def append(self, entry: LogEntry) -> None:
        if entry.index != len(self._entries) + 1:
            raise LocalError(f"append at {entry.index} but the log ends at {len(self._entries)}")
        if self._entries and entry.epoch < self._entries[-1].epoch:
            raise LocalError(f"entry {entry.index} has epoch {entry.epoch} below its predecessor")
        self._entries.append(entry)

    def truncate_after(self, index: int) -> None:
        del self._entries[index:]

    def first_index_of_run(self, index: int) -> LogIndex:
        """The first index of the run of same-epoch entries that contains `index`."""
        epoch = self.epoch_at(index)
        if epoch is None:
            raise LocalError(f"no entry at {index}")
        # epochs never decrease along a log, so the run starts where that epoch first appears
        return LogIndex(bisect_left(self._entries, epoch, hi=index, key=_epoch_of) + 1)

    def last_index_of_epoch(self, epoch: Epoch, upto: int) -> LogIndex | None:
        """The largest index <= upto whose entry has `epoch`, if any."""
        position = bisect_right(self._entries, epoch, hi=min(upto, len(self._entries)),
                                key=_epoch_of)
        if position and self._entries[position - 1].epoch == epoch:
            return LogIndex(position)
        return None


def _epoch_of(entry: LogEntry) -> Epoch:
    return entry.epoch
