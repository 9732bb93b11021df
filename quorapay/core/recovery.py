"""Takeover bookkeeping of a recovering leader: promises collected and the fetch in progress.

A leader granted epoch E may serve only once its log holds every committed entry. It asks all
nodes to promise E; each promise reports the promiser's last entry. Among a majority of promises,
the log with the greatest (last epoch, last index) contains every committed entry (any commit
quorum intersects the promise quorum), so the leader adopts that log, fetching the part after its
own commit index. Pure bookkeeping: the replica decides and sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorapay.core.types import Epoch, LogIndex, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Tail:
    """The last entry of a promiser's log, as reported in its promise."""

    last_epoch: Epoch
    last_index: LogIndex
    log_start: LogIndex = LogIndex(0)  # the promiser compacted its log up to here


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

    def best(self, me: NodeId, mine: Tail) -> tuple[NodeId, Tail] | None:
        """The most up-to-date log among a majority of promises (self wins ties), or None."""
        candidates = dict(self.promises)
        candidates[me] = mine
        if len(candidates) < self.quorum:
            return None
        return max(candidates.items(),
                   key=lambda item: (item[1].last_epoch, item[1].last_index, item[0] == me))
