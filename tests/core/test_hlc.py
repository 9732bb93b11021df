"""The hybrid logical clock rules: send, receive, too far ahead, and witnessing the log."""

import random

from hypothesis import given
from hypothesis import strategies as st

from quorapay.core.hlc import HybridClock, Timestamp

T = 1_800_000_000_000


def test_a_local_event_takes_the_wall_clock_when_it_moved_forward() -> None:
    clock = HybridClock(max_offset_ms=500)
    assert clock.now(T) == Timestamp(T, 0)
    assert clock.now(T + 5) == Timestamp(T + 5, 0)


def test_a_local_event_counts_when_the_wall_clock_stood_still_or_went_back() -> None:
    clock = HybridClock(max_offset_ms=500)
    clock.now(T)
    assert clock.now(T) == Timestamp(T, 1)
    assert clock.now(T - 10_000) == Timestamp(T, 2)  # the wall clock jumped back: we do not


def test_receiving_a_timestamp_ahead_within_the_bound_moves_past_it() -> None:
    clock = HybridClock(max_offset_ms=500)
    clock.now(T)
    assert clock.observe(Timestamp(T + 400, 7), T)
    assert clock.last == Timestamp(T + 400, 8)
    assert clock.now(T + 1) == Timestamp(T + 400, 9)  # our wall clock has not caught up yet
    assert clock.now(T + 401) == Timestamp(T + 401, 0)


def test_receiving_an_older_timestamp_is_just_a_local_event() -> None:
    clock = HybridClock(max_offset_ms=500)
    clock.now(T)
    assert clock.observe(Timestamp(T - 50, 99), T)
    assert clock.last == Timestamp(T, 1)


def test_receiving_the_same_wall_part_orders_after_both_counters() -> None:
    clock = HybridClock(max_offset_ms=500)
    clock.observe(Timestamp(T, 3), T)
    assert clock.last == Timestamp(T, 4)
    clock.observe(Timestamp(T, 10), T)
    assert clock.last == Timestamp(T, 11)


def test_a_timestamp_too_far_ahead_is_refused_and_changes_nothing() -> None:
    clock = HybridClock(max_offset_ms=500)
    clock.now(T)
    assert not clock.observe(Timestamp(T + 501, 0), T)
    assert clock.last == Timestamp(T, 0)
    assert clock.observe(Timestamp(T + 500, 0), T)  # exactly at the bound is accepted


def test_witnessing_the_log_moves_past_it_however_far_ahead() -> None:
    clock = HybridClock(max_offset_ms=500, start=Timestamp(T, 0))
    clock.witness(Timestamp(T + 10_000, 3))
    assert clock.now(T) == Timestamp(T + 10_000, 4)
    clock.witness(Timestamp(T - 1, 0))  # behind: nothing changes
    assert clock.last == Timestamp(T + 10_000, 4)


@given(st.lists(st.tuples(st.sampled_from(["now", "observe", "witness"]),
                          st.integers(-20_000, 20_000), st.integers(0, 5)), max_size=200))
def test_whatever_the_clocks_do_every_issued_timestamp_is_above_everything_seen(
        events: list[tuple[str, int, int]]) -> None:
    clock = HybridClock(max_offset_ms=500)
    highest = clock.last
    wall = T
    for kind, delta, logical in events:
        wall += delta // 10  # a wall clock that wanders both ways
        if kind == "now":
            issued = clock.now(wall)
            assert issued > highest
            highest = issued
        elif kind == "observe":
            remote = Timestamp(wall + delta, logical)
            if clock.observe(remote, wall):
                assert clock.last > max(highest, remote)
                highest = clock.last
            else:
                assert remote.wall_ms - wall > 500 and clock.last == highest
        else:
            clock.witness(Timestamp(wall + delta, logical))
            assert clock.last >= highest
            highest = clock.last


def test_timestamps_compare_by_wall_part_then_counter() -> None:
    stamps = [Timestamp(T + random.Random(i).randint(0, 3), i % 4) for i in range(20)]
    assert sorted(stamps) == sorted(stamps, key=lambda s: (s.wall_ms, s.logical))
