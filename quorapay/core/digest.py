"""Hashes that let replicas be compared without shipping their state."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import MODULUS, Delta, Ledger
from quorapay.core.log import Log
from quorapay.core.types import LogEntry

_encoder = msgspec.msgpack.Encoder()


def entry_digest(entry: LogEntry) -> str:
    """A short hash of one entry: index, epoch, payload and timestamp."""
    return hashlib.sha256(_encoder.encode(entry)).hexdigest()[:16]


def entry_hash(entry: LogEntry) -> int:
    """One entry's term in a log digest: SHA-256 of the entry (its index included), as an
    integer."""
    return int.from_bytes(hashlib.sha256(_encoder.encode(entry)).digest())




def log_digest(entries: Iterable[LogEntry]) -> str:
    """The digest of a run of entries: the sum of their hashes modulo 2**256. Each hash covers
    its entry's index, so the sum differs when any entry, or its place, does (but with
    negligible probability); and the digest of (a, c] is that of (a, b] plus that of (b, c]."""
    return _hex(sum(entry_hash(e) for e in entries))


def _hex(total: int) -> str:
    return f"{total % MODULUS:064x}"


@dataclass(frozen=True, slots=True)
class RangeFacts:
    """What a committed range of the log says: its digest and the first entry whose timestamp
    is not above the one before it (None: they strictly increase)."""

    log_digest: str
    unordered_at: int | None


class LogDigests:
    """Log digests of committed ranges, at the cost of the entries since the last check.

    Keeps S(i), the sum of entry hashes from a base index to i, at checkpoints (every `every`
    entries and wherever a digest was asked); the digest of (after, upto] is S(upto) - S(after).
    Committed entries never change, so neither does a sum once known, nor whether an entry's
    timestamp is above its predecessor's (those that are not are kept). That is trusted, not
    checked, beyond this: a checkpoint whose entry's epoch differs now (a committed entry
    replaced, which is a bug) drops every checkpoint, and the next check costs the whole range;
    a deep check (`range_facts`) hashes its range afresh. The base is the log's start at the
    first check; it moves there again when the log was compacted past every checkpoint below a
    range (once per compaction at most): that check costs the range.

    `plan` runs in the event loop (cheap: it slices references to immutable entries); the
    computation it returns may run in a worker thread, and records its checkpoints as it goes.
    Plans must run one at a time (the node's heavy-query slot sees to it).
    """

    def __init__(self, every: int = 1024) -> None:
        self._every = every
        self._sums: dict[int, tuple[int, int]] = {}  # index -> (S(index), epoch there)
        self._unordered: set[int] = set()  # entries whose timestamp is not above the previous

    def plan(self, log: Log, after: int, upto: int) -> Callable[[], RangeFacts]:
        """The facts of entries after+1..upto, all committed and in `log`, to compute."""
        self._forget_stale(log)
        usable = [i for i in self._sums if i <= after]
        if not usable:  # the first check, or the log was compacted past every checkpoint
            self._sums = {log.start: (0, log.start_epoch)}  # below `after`: a new base
            usable = [log.start]
        from_after = max(usable)
        from_upto = max(i for i in self._sums if i <= upto)  # >= from_after >= log.start
        ends = [(from_after, upto)] if from_upto <= after else [(from_after, after),
                                                              (from_upto, upto)]
        runs = [(start, log.ts_at(start), log.slice(start + 1, end)) for start, end in ends]

        def compute() -> RangeFacts:
            for start, previous, entries in runs:
                total = self._sums[start][0]
                for entry in entries:
                    total = (total + entry_hash(entry)) % MODULUS
                    if entry.index % self._every == 0 or entry.index in (after, upto):
                        self._sums[entry.index] = (total, entry.epoch)
                    if previous is not None and not previous < entry.ts:
                        self._unordered.add(entry.index)
                    previous = entry.ts
            unordered = [i for i in self._unordered if after < i <= upto]
            return RangeFacts(log_digest=_hex(self._sums[upto][0] - self._sums[after][0]),
                              unordered_at=min(unordered, default=None))
        return compute

    def _forget_stale(self, log: Log) -> None:
        """Drop checkpoints below the log's start; all of them if one's entry changed."""
        if any(log.epoch_at(i) != epoch for i, (_, epoch) in self._sums.items()
               if i >= log.start):
            self._sums, self._unordered = {}, set()
        self._sums = {i: v for i, v in self._sums.items() if i >= log.start}
        self._unordered = {i for i in self._unordered if i > log.start}


def range_facts(previous: Timestamp | None, entries: Sequence[LogEntry]) -> RangeFacts:
    """The facts of a run of entries, hashed afresh; `previous`: the timestamp before them."""
    unordered = None
    for entry in entries:
        if unordered is None and previous is not None and not previous < entry.ts:
            unordered = entry.index
        previous = entry.ts
    return RangeFacts(log_digest=log_digest(entries), unordered_at=unordered)


def replay(entries: Iterable[LogEntry]) -> Ledger:
    """The ledger a replica must hold after applying exactly these entries, in order."""
    ledger = Ledger()
    for entry in entries:
        ledger.apply(entry, Delta())
    return ledger
