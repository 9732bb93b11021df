"""When a node compacts its log: a pure policy over its log start and applied index."""

from __future__ import annotations

from dataclasses import dataclass

from quorapay.core.errors import LocalError
from quorapay.core.types import LogIndex


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionPolicy:
    """Forget applied entries once `every` of them sit above the last `retain` applied ones.

    The retained tail lets a briefly lagging follower catch up from the log instead of needing
    a snapshot of the whole ledger; `every` spreads the deletes into few large transactions.
    """

    every: int
    retain: int

    def __post_init__(self) -> None:
        if self.every < 1 or self.retain < 0:
            raise LocalError("compaction needs every >= 1 and retain >= 0")

    def upto(self, log_start: LogIndex, applied: LogIndex) -> LogIndex | None:
        """Where to compact to now, or None if it is not yet time."""
        if applied - log_start >= self.every + self.retain:
            return LogIndex(applied - self.retain)
        return None
