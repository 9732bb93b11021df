"""The simulator: exact replay, clean runs, and canaries it must catch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quorapay.sim.run import COVERAGE, Options, replay_command, run_checked, run_seed
from tests.sim.canaries import CANARIES

SEEDS_PER_CANARY = 200


def test_a_seed_replays_exactly() -> None:
    first, again = run_seed(11), run_seed(11)
    assert first == again
    assert first.trace_hash == again.trace_hash
    assert run_seed(12).trace_hash != first.trace_hash


def test_a_run_without_tracing_runs_the_same_events() -> None:
    traced, untraced = run_seed(13), run_seed(13, trace=False)
    assert untraced.trace_hash is None and traced.trace_hash is not None
    assert replace(untraced, trace_hash=traced.trace_hash) == traced


def test_a_failing_seed_is_reported_with_the_trace_hash_of_its_replay() -> None:
    options, canary = Options(), CANARIES["apply twice on retry"]
    seed = next(s for s in range(1, 20) if not run_seed(s, options, canary, trace=False).ok)
    result = run_checked(seed, options, canary)
    assert result.violations and result.trace_hash is not None
    assert result == run_seed(seed, options, canary)


def test_clean_runs_inject_faults_commit_and_break_nothing() -> None:
    results = [run_seed(seed) for seed in range(1, 11)]
    assert all(r.ok for r in results), [r.violations for r in results if not r.ok]
    assert all(r.commits > 100 and r.acknowledged > 100 for r in results)
    injected = set().union(*(r.faults for r in results))
    assert injected == {"kill", "pause", "partition", "zk", "net", "clock", "skew", "disk",
                        "storage", "switchover", "figure8"}


def test_switchovers_hand_over_to_their_target_and_no_client_is_left_unsure() -> None:
    """An operator's switchovers, nothing else: each is handed over to its target, which takes
    over first; clients are told to retry (NOT_LEADER, UNAVAILABLE), never an unknown outcome."""
    for seed in range(1, 11):
        result = run_seed(seed, replace(Options(), faults=("switchover",)), trace=False)
        assert result.ok, result.violations
        asked = result.faults["switchover"]
        assert asked >= 5
        assert result.switchovers == {"handed over": asked, "taken over by their target": asked}
        assert set(result.client_errors) <= {"NOT_LEADER", "UNAVAILABLE"}, result.client_errors


def test_without_faults_nothing_is_injected_and_everything_commits() -> None:
    result = run_seed(3, replace(Options(), faults=()))
    assert result.ok
    assert result.faults == {}
    assert result.commits > 500


def test_the_fault_mix_reaches_every_hard_state() -> None:
    """Figure 8, late snapshots, reads at a deposed leader, takeovers behind the clock, retries
    after a snapshot, crashes mid-write, storage faults: each reached in a few seeds of 60."""
    reached: dict[str, int] = dict.fromkeys(COVERAGE, 0)
    for seed in range(1, 61):
        result = run_seed(seed, Options(), trace=False)
        assert result.ok, result.violations
        for state, count in result.coverage.items():
            reached[state] += count > 0
    assert all(n > 0 for n in reached.values()), reached


UNCAUGHT: dict[str, str] = {  # known misses: strict, so that catching one fails here
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=UNCAUGHT[name]))
    if name in UNCAUGHT else name for name in CANARIES])
def test_every_canary_is_caught_within_200_seeds(name: str) -> None:
    for seed in range(1, SEEDS_PER_CANARY + 1):
        result = run_seed(seed, Options(), CANARIES[name], trace=False)
        if result.violations:
            return
    pytest.fail(f"planted bug {name!r} survived {SEEDS_PER_CANARY} seeds")


def test_the_replay_command_names_everything_needed() -> None:
    options = replace(Options(), steps=500, nodes=5, faults=("kill", "zk"))
    assert replay_command(42, options) == ("quorapay sim --seed 42 --steps 500 --nodes 5 "
                                           "--faults kill,zk")
