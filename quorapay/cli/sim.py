"""`quorapay sim`: seeded simulations of the real core under faults; a failing seed replays."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace

import click

from quorapay.cli.context import emit, json_option
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress
from quorapay.sim.run import (
    COVERAGE,
    FAULTS,
    Options,
    SeedResult,
    replay_command,
    run_seed,
    run_seeds,
)


def _faults(value: str) -> tuple[str, ...]:
    if value in ("", "none"):
        return ()
    if value == "all":
        return FAULTS
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULTS))
    if unknown:
        raise click.BadParameter(f"unknown fault(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(FAULTS)}, all or none")
    return kinds


@cli.command()
@click.option("--seeds", default=1000, show_default=True, type=click.IntRange(1),
              help="How many seeds to run (1, 2, ... or from --first).")
@click.option("--seed", type=int, help="Run (replay) just this seed, and show its trace hash.")
@click.option("--first", default=1, show_default=True, help="The first seed of a --seeds run.")
@click.option("--steps", default=Options().steps, show_default=True, type=click.IntRange(100),
              help="Events in the fault phase of each seed.")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option("--faults", "faults", default="all", show_default=True,
              help=f"Comma-separated fault kinds ({', '.join(FAULTS)}), all or none.")
@click.option("--workers", default=os.cpu_count() or 1, show_default=True,
              type=click.IntRange(1, 64), help="Processes running seeds in parallel.")
@click.option("--compaction/--no-compaction", default=True, show_default=True,
              help="Let two seeds in three compact their logs aggressively (snapshots).")
@json_option
def sim(seeds: int, seed: int | None, first: int, steps: int, nodes: int, faults: str,
        workers: int, compaction: bool, as_json: bool) -> None:
    """Simulate the real replication core under seeded faults and check every invariant."""
    options = replace(Options(), steps=steps, nodes=nodes, faults=_faults(faults),
                      compaction=compaction)
    started = time.monotonic()
    results: list[SeedResult] = []
    failing: list[SeedResult] = []
    runs = iter([run_seed(seed, options)]) if seed is not None else \
        run_seeds(list(range(first, first + seeds)), options, workers)  # untraced: faster
    interrupted = False
    total = 1 if seed is not None else seeds
    try:
        with progress("seeds", total=total, as_json=as_json) as shown:
            for result in runs:
                results.append(result)
                if not result.ok:
                    failing.append(result)
                    if not as_json:
                        click.echo(f"seed {result.seed}: {result.violations[0]}", err=True)
                shown.update(completed=len(results),
                             text=f"seeds ({len(failing)} failing)" if failing else "seeds")
    except KeyboardInterrupt:  # Ctrl-C: report the seeds that finished (workers ignore it)
        interrupted = True
    finally:
        close = getattr(runs, "close", None)
        if close is not None:
            close()  # stops the workers
    summary = _summary(results, failing, options, time.monotonic() - started)
    lines = [f"{summary['seeds']} seed(s), {summary['steps']} steps, "
             f"{summary['simulated_seconds']:.0f} simulated seconds in "
             f"{summary['wall_seconds']:.1f}s",
             f"faults injected: {_counts(summary['faults'])}",
             f"commits: {summary['commits']}, acknowledged transfers: "
             f"{summary['acknowledged']}",
             f"coverage (seeds reaching each hard state): {_coverage(summary['coverage'])}",
             f"violations: {len(failing)} seed(s)"]
    asked = summary["switchovers"]
    assert isinstance(asked, dict)
    if asked["asked"]:
        lines.insert(3, f"switchovers: {asked['asked']} asked, {asked['handed_over']} handed "
                        f"over, {asked['taken_by_target']} taken over by their target first")
    if seed is not None:
        lines.append(f"trace hash: {results[0].trace_hash}")
    lines += [f"replay: {replay_command(r.seed, options)}" for r in failing[:10]]
    emit(as_json, summary, "\n".join(lines))
    if interrupted:
        done = [r.seed for r in results]
        span = f"seeds {min(done)}..{max(done)}" if done else "no seed"
        failed = f", {len(failing)} failing" if failing else ""
        raise Failed(f"interrupted after {len(results)} of {1 if seed is not None else seeds} "
                     f"seed(s) ({span} finished{failed})", exit_code=130)
    if failing:
        raise Failed(f"{len(failing)} seed(s) broke an invariant")


def _summary(results: list[SeedResult], failing: list[SeedResult], options: Options,
             wall: float) -> dict[str, object]:
    faults: Counter[str] = Counter()
    switchovers: Counter[str] = Counter()
    for result in results:
        faults.update(result.faults)
        switchovers.update(result.switchovers)
    return {
        "seeds": len(results), "steps": sum(r.steps for r in results),
        "simulated_seconds": round(sum(r.simulated_seconds for r in results), 3),
        "wall_seconds": round(wall, 3), "faults": dict(sorted(faults.items())),
        "commits": sum(r.commits for r in results),
        "acknowledged": sum(r.acknowledged for r in results),
        "switchovers": {"asked": faults.get("switchover", 0),
                        "handed_over": switchovers["handed over"],
                        "taken_by_target": switchovers["taken over by their target"]},
        "coverage": {state: sum(1 for r in results if r.coverage.get(state))
                     for state in COVERAGE},
        "violations": [{"seed": r.seed, "violations": list(r.violations),
                        "trace_hash": r.trace_hash,
                        "replay": replay_command(r.seed, options)} for r in failing],
        "trace_hash": results[0].trace_hash if len(results) == 1 else None,  # of a --seed replay
    }


def _coverage(coverage: object) -> str:
    assert isinstance(coverage, dict)
    return ", ".join(f"{state} {n}" for state, n in coverage.items())


def _counts(counts: object) -> str:
    assert isinstance(counts, dict)
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"
