"""Leader-side replication progress of one follower.

Owns the next index to send and the highest index known durable on the follower. Pure
bookkeeping: never sends, never persists. Invariant: match_index < next_index.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from quorapay.core.types import LogIndex


@dataclass(slots=True, kw_only=True)
class Progress:
    next_index: LogIndex
    match_index: LogIndex = LogIndex(0)
    acked_seq: int = 0  # highest heartbeat sequence the follower answered in this epoch
    last_heard: int = 0  # tick of the last reply in this epoch
    last_progress: int = 0  # tick at which match last advanced (or we last retransmitted)
    inflight: deque[int] = field(default_factory=deque)  # last index of each unacked Append
    # After a rejection we do not know where the logs agree: send one Append at a time (a probe)
    # and ignore rejections of anything but the latest probe, until one is acknowledged.
    probing: bool = True
    probe_prev: int = -1
    # The entries it needs were compacted: a snapshot of this index is on its way (sent at
    # tick snapshot_sent); nothing else is sent until it is acknowledged or the retry is due.
    snapshot_index: LogIndex | None = None
    snapshot_sent: int = 0
    told_commit: int = 0  # the commit index the last Append sent to it carried

    def acknowledge(self, match_index: LogIndex, now: int) -> None:
        if match_index > self.match_index:
            self.match_index = match_index
            self.last_progress = now
            self.probing = False
        if self.snapshot_index is not None and self.match_index >= self.snapshot_index:
            self.snapshot_index = None
        self.next_index = LogIndex(max(self.next_index, self.match_index + 1))
        while self.inflight and self.inflight[0] <= self.match_index:
            self.inflight.popleft()

    def rewind(self, next_index: int, now: int) -> None:
        """Resend from `next_index` (never below what is known to match)."""
        self.next_index = LogIndex(max(self.match_index + 1, next_index))
        self.inflight.clear()
        self.last_progress = now
        self.probing = True

    def window(self, max_inflight: int) -> int:
        return 1 if self.probing else max_inflight
