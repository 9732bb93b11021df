"""`quorapay chaos skew` and `strobe`: move a node's wall clock; `heal` puts it back."""

from __future__ import annotations

from collections.abc import Callable

import click

from quorapay.chaos import processes
from quorapay.cli.chaos import chaos
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.clock import overrides
from quorapay.clock.skew import ClockFaultError, ClockSkew, parse_drift, parse_offset


def _set(app: AppContext, verb: str, target: str, make: Callable[[ClockSkew], ClockSkew],
         as_json: bool) -> None:
    node = run(processes.resolve, app.cluster, target)
    path = overrides.skew_path(app.cluster.run_dir, node.id)
    skew = make(overrides.read_skew(path) or node.clock)
    problem = skew.problem()
    if problem is not None:
        raise ClockFaultError(problem)
    overrides.write_skew(path, skew)
    emit(as_json, {"verb": verb, "node": node.id, "offset_ms": skew.offset_ms,
                   "drift_ppm": skew.drift_ppm, "strobe_ms": skew.strobe_ms,
                   "strobe_period_s": skew.strobe_period_s},
         f"{verb}: {node.id}'s wall clock now {skew.describe()} (against the machine's); "
         "undo with `quorapay chaos heal`")


@chaos.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("offset")
@click.option("--drift", default="0ppm", show_default=True,
              help="And let it run fast (+) or slow (-) by this rate, e.g. 100ppm.")
@json_option
@pass_app
def skew(app: AppContext, target: str, offset: str, drift: str, as_json: bool) -> None:
    """Set NODE's (or the leader's) wall clock OFFSET from the machine's: +2s, -500ms, -10s."""
    offset_ms, drift_ppm = parse_offset(offset), parse_drift(drift)
    _set(app, "skew", target,
         lambda _: ClockSkew(offset_ms=offset_ms, drift_ppm=drift_ppm), as_json)


@chaos.command()
@click.argument("target")
@click.option("--amplitude", default="2s", show_default=True,
              help="Jump this far ahead, then as far behind, and so on.")
@click.option("--period", default="1s", show_default=True, help="How often it jumps.")
@json_option
@pass_app
def strobe(app: AppContext, target: str, amplitude: str, period: str, as_json: bool) -> None:
    """Make NODE's (or the leader's) wall clock jump back and forth around its offset."""
    amplitude_ms, period_ms = abs(parse_offset(amplitude)), parse_offset(period)
    if period_ms < 10:
        raise ClockFaultError("--period must be at least 10ms")
    _set(app, "strobe", target, lambda current: ClockSkew(
        offset_ms=current.offset_ms, drift_ppm=current.drift_ppm, strobe_ms=amplitude_ms,
        strobe_period_s=period_ms / 1000), as_json)
