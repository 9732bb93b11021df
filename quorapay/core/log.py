"""The replica's view of the replicated log: contiguous entries after a start point.

The log holds the entries `start + 1 .. last`. Everything at or below `start` was compacted away
(it is committed and applied, its effect kept in the ledger's state); `start` itself still has a
known epoch, so (prev_index=start, prev_epoch) can be checked. A fresh log starts at 0, a
sentinel with epoch 0, so (0, 0) always matches. Pure bookkeeping: persistence is the driver's
job, told through `Ready.persist`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from quorapay.core.errors import LocalError
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.types import Epoch, LogEntry, LogIndex


class Log:
    def __init__(self, entries: Iterable[LogEntry] = (), *, start: LogIndex = LogIndex(0),
                 start_epoch: Epoch = Epoch(0), start_ts: Timestamp = ZERO) -> None:
        self._start = start
        self._start_epoch = start_epoch
        self._start_ts = start_ts
        self._entries: list[LogEntry] = []
        # the total weight of the entries through each one held (counted from any base: only
        # differences are read), so the weight of a range is one subtraction
        self._through: list[int] = []
        for entry in entries:
            self.append(entry)

    @property
    def start(self) -> LogIndex:
        """The compaction point: entries up to here are gone (committed and applied)."""
        return self._start

    @property
    def start_epoch(self) -> Epoch:
        return self._start_epoch

    @property
    def start_ts(self) -> Timestamp:
        """The timestamp of the entry at the compaction point."""
        return self._start_ts

    @property
    def last_ts(self) -> Timestamp:
        """The timestamp of the last entry (of the start point if none is held)."""
        return self._entries[-1].ts if self._entries else self._start_ts

    @property
    def last_index(self) -> LogIndex:
        return LogIndex(self._start + len(self._entries))

    @property
    def last_epoch(self) -> Epoch:
        return self._entries[-1].epoch if self._entries else self._start_epoch

    def holds(self, index: int) -> bool:
        """Whether the entry itself is here (not compacted, not past the end)."""
        return self._start < index <= self.last_index

    def epoch_at(self, index: int) -> Epoch | None:
        """The epoch of the entry at `index` (also at the start point); None if unknown."""
        if index == self._start:
            return self._start_epoch
        if self.holds(index):
            return self._entries[index - self._start - 1].epoch
        return None

    def ts_at(self, index: int) -> Timestamp | None:
        """The timestamp of the entry at `index` (also at the start point); None if unknown."""
        if index == self._start:
            return self._start_ts
        if self.holds(index):
            return self._entries[index - self._start - 1].ts
        return None

    def entry(self, index: int) -> LogEntry:
        if not self.holds(index):
            raise LocalError(f"no entry {index} here (log holds {self._start + 1}.."
                             f"{self.last_index})")
        return self._entries[index - self._start - 1]

    def slice(self, first: int, last: int) -> tuple[LogEntry, ...]:
        """The entries held in first..last inclusive."""
        low = max(first, self._start + 1) - self._start - 1
        high = max(last - self._start, 0)
        return tuple(self._entries[low:high])

    def take(self, first: int, max_weight: int) -> tuple[LogEntry, ...]:
        """Entries from `first` up to about `max_weight` commands; at least one if any exist."""
        if first <= self._start:
            raise LocalError(f"entries from {first} were compacted (log starts after "
                             f"{self._start})")
        taken: list[LogEntry] = []
        weight = 0
        for entry in self._entries[first - self._start - 1:]:
            if taken and weight + entry.weight > max_weight:
                break
            taken.append(entry)
            weight += entry.weight
        return tuple(taken)

    def weight_upto(self, index: int) -> int:
        """The weight (`LogEntry.weight`, about a command each) of the entries held up to
        `index`: what of the log's memory compacting up to there would free."""
        held = min(index, self.last_index) - self._start
        if held <= 0:
            return 0
        base = self._through[0] - self._entries[0].weight
        return self._through[held - 1] - base

    def start_within(self, index: int, weight: int) -> LogIndex:
        """The lowest point p (at least the start) such that the entries p+1..`index` held
        weigh at most `weight` (fewer than one entry if the entry at `index` alone weighs
        more)."""
        held = min(index, self.last_index) - self._start
        if held <= 0:
            return self._start
        total = self._through[held - 1]
        if total - (self._through[0] - self._entries[0].weight) <= weight:
            return self._start
        position = bisect_left(self._through, total - weight, hi=held)
        return LogIndex(self._start + min(position + 1, held))

    def append(self, entry: LogEntry) -> None:
        if entry.index != self.last_index + 1:
            raise LocalError(f"append at {entry.index} but the log ends at {self.last_index}")
        if entry.epoch < self.last_epoch:
            raise LocalError(f"entry {entry.index} has epoch {entry.epoch} below its predecessor")
        self._entries.append(entry)
        self._through.append((self._through[-1] if self._through else 0) + entry.weight)

    def truncate_after(self, index: int) -> None:
        if index < self._start:
            raise LocalError(f"cannot truncate after {index}: compacted up to {self._start}")
        del self._entries[index - self._start:]
        del self._through[index - self._start:]

    def compact(self, upto: LogIndex) -> None:
        """Forget the entries up to `upto` (which the caller has applied)."""
        if not self._start <= upto <= self.last_index:
            raise LocalError(f"cannot compact up to {upto}: log is {self._start}.."
                             f"{self.last_index}")
        epoch = self.epoch_at(upto)
        assert epoch is not None
        ts = self.entry(upto).ts if upto > self._start else self._start_ts
        del self._entries[:upto - self._start]
        del self._through[:upto - self._start]
        self._start, self._start_epoch, self._start_ts = upto, epoch, ts

    def reset(self, start: LogIndex, start_epoch: Epoch, start_ts: Timestamp = ZERO) -> None:
        """Replace everything with an empty log starting after a snapshot at `start`."""
        self._entries, self._through = [], []
        self._start, self._start_epoch, self._start_ts = start, start_epoch, start_ts

    def first_index_of_run(self, index: int) -> LogIndex:
        """The first index (not below the start) of the run of same-epoch entries at `index`."""
        epoch = self.epoch_at(index)
        if epoch is None:
            raise LocalError(f"no entry at {index}")
        if index == self._start:
            return LogIndex(index)
        # epochs never decrease along a log, so the run starts where that epoch first appears
        position = bisect_left(self._entries, epoch, hi=index - self._start, key=_epoch_of)
        return LogIndex(self._start + position + 1)

    def last_index_of_epoch(self, epoch: Epoch, upto: int) -> LogIndex | None:
        """The largest held index <= upto whose entry has `epoch`, if any."""
        position = bisect_right(self._entries, epoch,
                                hi=max(0, min(upto, self.last_index) - self._start),
                                key=_epoch_of)
        if position and self._entries[position - 1].epoch == epoch:
            return LogIndex(self._start + position)
        return None


def _epoch_of(entry: LogEntry) -> Epoch:
    return entry.epoch
