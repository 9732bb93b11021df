"""Offset measurement: the true offset lies within the estimate's error, whatever the delays."""

import random

from quorapay.core.clock_sync import ClockSync
from quorapay.core.messages import ClockEcho
from quorapay.core.types import Epoch, NodeId

PEERS = (NodeId("n2"), NodeId("n3"))


def sync() -> ClockSync:
    return ClockSync(PEERS, quorum=2, max_offset_ms=500, probe_ticks=5)


def round_trip(clock: ClockSync, peer: NodeId, *, offset: int, there: int, back: int,
               at: int, tick: int) -> None:
    """Probe `peer` (whose clock is ours + offset) at our time `at`, with one-way delays."""
    echo = ClockEcho(epoch=Epoch(1), probe_ms=at, echo_ms=at + there + offset)
    clock.on_echo(peer, echo, at + there + back, tick)


def test_the_true_offset_is_within_the_error_of_every_estimate() -> None:
    rng = random.Random(7)
    for _ in range(500):
        clock = sync()
        offset = rng.randint(-5_000, 5_000)
        round_trip(clock, PEERS[0], offset=offset, there=rng.randint(0, 80),
                   back=rng.randint(0, 80), at=1_000_000, tick=1)
        sample = clock.offset(PEERS[0], tick=1)
        assert sample is not None
        assert sample.offset_ms - sample.error_ms <= offset <= sample.offset_ms + sample.error_ms


def test_the_shortest_round_trip_of_recent_samples_wins_and_old_ones_expire() -> None:
    clock = sync()
    round_trip(clock, PEERS[0], offset=100, there=5, back=45, at=0, tick=1)
    round_trip(clock, PEERS[0], offset=100, there=2, back=2, at=100, tick=2)
    round_trip(clock, PEERS[0], offset=100, there=30, back=1, at=200, tick=3)
    best = clock.offset(PEERS[0], tick=3)
    assert best is not None and best.error_ms == 2 and best.offset_ms == 100
    assert clock.offset(PEERS[0], tick=3 + 41) is None  # nothing measured for 2 s: unknown


def test_skewed_only_when_certainly_off_from_a_majority() -> None:
    clock = sync()
    round_trip(clock, PEERS[0], offset=600, there=0, back=300, at=0, tick=1)  # 450..750: maybe
    round_trip(clock, PEERS[1], offset=900, there=10, back=10, at=0, tick=1)
    assert clock.off_peers(tick=1) == [PEERS[1]] and not clock.skewed(tick=1)
    round_trip(clock, PEERS[0], offset=600, there=5, back=5, at=400, tick=2)
    assert clock.skewed(tick=2)


def test_a_round_trip_our_clock_jumped_back_in_is_no_measurement() -> None:
    clock = sync()
    clock.on_echo(PEERS[0], ClockEcho(epoch=Epoch(1), probe_ms=1_000, echo_ms=1_010), 900, 1)
    assert clock.offset(PEERS[0], tick=1) is None
