"""The log, with and without a compacted prefix."""

import pytest

from quorapay.core.errors import LocalError
from quorapay.core.log import Log
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex


def entries(epochs: list[int], first: int = 1) -> list[LogEntry]:
    return [LogEntry(index=LogIndex(first + i), epoch=Epoch(e), payload=Commands(commands=()))
            for i, e in enumerate(epochs)]


def test_a_fresh_log_starts_at_the_zero_sentinel() -> None:
    log = Log(entries([1, 1, 2]))
    assert (log.start, log.epoch_at(0), log.last_index, log.last_epoch) == (0, 0, 3, 2)
    assert log.first_index_of_run(3) == 3
    assert log.last_index_of_epoch(Epoch(1), 3) == 2


def test_compaction_keeps_the_start_point_and_the_tail() -> None:
    log = Log(entries([1, 1, 2, 2, 3]))
    log.compact(LogIndex(3))
    assert (log.start, log.start_epoch, log.last_index) == (3, 2, 5)
    assert log.epoch_at(3) == 2
    assert log.epoch_at(2) is None
    assert not log.holds(3)
    assert log.holds(4)
    assert [e.index for e in log.slice(1, 10)] == [4, 5]
    assert log.first_index_of_run(4) == 4
    assert log.last_index_of_epoch(Epoch(2), 5) == 4
    assert log.last_index_of_epoch(Epoch(1), 5) is None
    with pytest.raises(LocalError):
        log.take(3, 10)
    with pytest.raises(LocalError):
        log.truncate_after(2)


def test_a_compacted_log_restores_from_its_start_and_tail() -> None:
    log = Log(entries([2, 3], first=4), start=LogIndex(3), start_epoch=Epoch(2))
    assert log.last_index == 5
    log.append(entries([3], first=6)[0])
    with pytest.raises(LocalError):
        log.append(entries([1], first=7)[0])  # epochs never decrease
    log.reset(LogIndex(40), Epoch(7))
    assert (log.start, log.last_index, log.last_epoch) == (40, 40, 7)
