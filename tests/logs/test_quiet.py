"""Rate-limited log lines: a flood becomes one line per interval with a count; a flapping state
is held back, and the log still ends telling the state the node is in."""

from __future__ import annotations

import logging

import pytest

from quorapay.logs.quiet import QuietLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_a_flood_of_events_is_one_line_per_interval_with_a_count(
        caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    quiet = QuietLog(logging.getLogger("t"), interval=10.0, now=clock)
    for step in range(250):  # 25 s of an event every 0.1 s
        clock.now = step * 0.1
        quiet.warning("peer-n2", "dropped a message from %s", "n2")
    assert messages(caplog) == [
        (logging.WARNING, "dropped a message from n2"),
        (logging.WARNING, "dropped a message from n2 (99 more like it in 10 s not logged)"),
        (logging.WARNING, "dropped a message from n2 (99 more like it in 10 s not logged)")]
    clock.now = 40.0  # the flood stopped at 24.9 s: its last 49 events are told of too
    quiet.flush()
    assert messages(caplog)[3:] == [
        (logging.WARNING, "dropped a message from n2 (48 more like it in 10 s not logged)")]


def test_keys_are_limited_separately(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    quiet = QuietLog(logging.getLogger("t"), now=clock)
    quiet.warning("a", "a")
    quiet.warning("b", "b")
    quiet.warning("a", "a")
    assert [m for _, m in messages(caplog)] == ["a", "b"]


def test_a_flapping_state_ends_with_the_latest_state_logged(
        caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    quiet = QuietLog(logging.getLogger("t"), interval=10.0, now=clock)
    raised = True
    for step in range(40):  # 12 s of a strobe: raised and cleared every 0.3 s
        clock.now = step * 0.3
        quiet.state("alarm", logging.WARNING if raised else logging.INFO,
                    "raised" if raised else "cleared", fields={"alarm": raised})
        quiet.flush()
        raised = not raised
    assert messages(caplog) == [  # at 0 s, then the state at 10.2 s
        (logging.WARNING, "raised"),
        (logging.WARNING, "raised (33 earlier changes in 10 s not logged)")]
    clock.now = 30.0  # the strobe stopped at 11.7 s, last "cleared": the next flush says so
    quiet.flush()
    assert messages(caplog)[2:] == [
        (logging.INFO, "cleared (4 earlier changes in 10 s not logged)")]
    assert caplog.records[-1].fields == {"alarm": False}  # type: ignore[attr-defined]


def test_a_rare_state_change_is_logged_at_once(caplog: pytest.LogCaptureFixture,
                                               clock: Clock) -> None:
    quiet = QuietLog(logging.getLogger("t"), interval=10.0, now=clock)
    quiet.state("alarm", logging.WARNING, "raised")
    clock.now = 60.0
    quiet.state("alarm", logging.INFO, "cleared")
    assert messages(caplog) == [(logging.WARNING, "raised"), (logging.INFO, "cleared")]
