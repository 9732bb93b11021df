"""A node's wall clock: offset, drift and strobe on top of the machine's; bad fault files are
ignored with an error, never a crash."""

import logging
from pathlib import Path

import pytest

from quorapay.clock.overrides import skew_path, write_skew
from quorapay.clock.skew import ClockSkew
from quorapay.node.clock import WallClock, _apply

T = 1_800_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.system, self.monotonic = T, 100.0

    def advance(self, seconds: float) -> None:
        self.system += seconds
        self.monotonic += seconds


def clock(skew: ClockSkew, now: FakeTime) -> WallClock:
    return WallClock(skew, system=lambda: now.system, monotonic=lambda: now.monotonic)


def test_an_offset_and_a_drift_move_the_wall_clock() -> None:
    now = FakeTime()
    wall = clock(ClockSkew(offset_ms=-1_500, drift_ppm=1_000), now)
    assert wall.read_ms() == T * 1000 - 1_500
    now.advance(10)  # 1000 ppm over 10 s: 10 ms more
    assert wall.offset_ms() == -1_490


def test_a_strobe_jumps_ahead_and_behind_every_period() -> None:
    now = FakeTime()
    wall = clock(ClockSkew(strobe_ms=2_000, strobe_period_s=0.5), now)
    seen = []
    for _ in range(4):
        seen.append(wall.offset_ms())
        now.advance(0.5)
    assert seen == [2_000, -2_000, 2_000, -2_000]


def test_a_fault_file_changes_the_clock_and_its_removal_restores_the_base(
        tmp_path: Path) -> None:
    now = FakeTime()
    wall = clock(ClockSkew(offset_ms=100), now)
    path = skew_path(tmp_path, "n1")
    write_skew(path, ClockSkew(offset_ms=2_000))
    _apply(wall, path)
    assert wall.offset_ms() == 2_000
    path.unlink()
    _apply(wall, path)
    assert wall.offset_ms() == 100


@pytest.mark.parametrize("content", [b"{not json", b'{"strobe_ms": 5, "strobe_period_s": 0}',
                                     b'{"offset_ms": 99999999999}', b'{"speed": 3}'])
def test_a_bad_fault_file_is_ignored_with_an_error(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    now = FakeTime()
    wall = clock(ClockSkew(), now)
    path = skew_path(tmp_path, "n1")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        _apply(wall, path)
    assert wall.offset_ms() == 0 and "ignoring a clock fault" in caplog.text
