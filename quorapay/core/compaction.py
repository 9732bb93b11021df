"""When a node compacts its log: a pure policy over its log start and applied index."""

from __future__ import annotations

from dataclasses import dataclass

from quorapay.core.errors import LocalError
from quorapay.core.log import Log
from quorapay.core.types import LogIndex


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionPolicy:
    """Forget applied entries once `every` of them sit above the last `retain` applied ones,
    or once the applied entries held weigh more than `max_commands` (about a command each:
    what bounds the log's memory, whatever the size of its entries); then at most the last
    `retain` entries, weighing at most half that, are kept.

    The retained tail lets a briefly lagging follower catch up from the log instead of needing
    a snapshot of the whole ledger; `every` spreads the deletes into few large transactions.
    """

    every: int
    retain: int
    max_commands: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or self.retain < 0 or (
                self.max_commands is not None and self.max_commands < 1):
            raise LocalError("compaction needs every >= 1, retain >= 0 and max_commands >= 1")

    def upto(self, log: Log, applied: LogIndex) -> LogIndex | None:
        """Where to compact `log` to now, or None if it is not yet time."""
        if applied - log.start >= self.every + self.retain:
            return LogIndex(applied - self.retain)
        if self.max_commands is not None and log.weight_upto(applied) > self.max_commands:
            return LogIndex(max(applied - self.retain,
                                log.start_within(applied, self.max_commands // 2)))
        return None
