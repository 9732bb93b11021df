"""Takeover bookkeeping of a recovering leader: promises collected and the fetch in progress.

A leader granted epoch E may serve only once its log holds every committed entry. It asks all
nodes to promise E; each promise reports the promiser's last entry. Among a majority of promises,
the log with the greatest (last epoch, last index) contains every committed entry (any commit
quorum intersects the promise quorum), so the leader adopts that log, fetching the part after its
own commit index. Pure bookkeeping: the replica decides and sends.

A promiser whose last entry is stamped in the future (more than the maximum clock offset ahead of
our wall clock: a leader whose clock jumped ahead, whose entries nobody accepted) does not count:
the leader waits for a majority of other promises -- which holds every committed entry just the
same -- so that uncommitted, future-stamped tail is dropped instead of committed. (Promises are
asked for again every retransmit interval; once real time reaches the tail, it counts again.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.types import Epoch, LogIndex, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Tail:
    """The last entry of a promiser's log, as reported in its promise."""

    last_epoch: Epoch
    last_index: LogIndex
    log_start: LogIndex = LogIndex(0)  # the promiser compacted its log up to here
    last_ts: Timestamp = ZERO  # the timestamp of the last entry


@dataclass(slots=True, kw_only=True)
class Fetching:
    source: NodeId
    target: Tail  # the source's log ends here; adopt it up to exactly this index
    next_index: LogIndex  # the next entry to ask for
    last_progress: int  # tick of the last useful reply (or of the request)
    retries: int = 0


@dataclass(slots=True, kw_only=True)
class Recovery:
    epoch: Epoch
    quorum: int
    promises: dict[NodeId, Tail] = field(default_factory=dict)
    fetching: Fetching | None = None
    progress_at: int = 0  # the tick it began, or last received entries or a snapshot

    def best(self, me: NodeId, mine: Tail, *, future_after: int | None = None
             ) -> tuple[NodeId, Tail] | None:
        """The most up-to-date log among a majority of promises (self wins ties), or None.
        Promisers whose last timestamp's wall part is above `future_after` do not count."""
        candidates = dict(self.promises)
        candidates[me] = mine
        if future_after is not None:
            candidates = {n: t for n, t in candidates.items()
                          if t.last_ts.wall_ms <= future_after}
        if len(candidates) < self.quorum:
            return None
        return max(candidates.items(),
                   key=lambda item: (item[1].last_epoch, item[1].last_index, item[0] == me))
