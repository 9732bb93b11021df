"""`quorapay check bank`: a Jepsen-style test of the running local cluster."""

from __future__ import annotations

from pathlib import Path

import click

from quorapay.check.bank import BankOptions, BankOutcome, describe, run_bank
from quorapay.check.bank import as_json as outcome_json
from quorapay.check.nemesis import KINDS
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress
from quorapay.interrupt import on_interrupt


@cli.group()
def check() -> None:
    """Jepsen-style tests against the running cluster."""


def _kinds(value: str) -> tuple[str, ...]:
    if value in ("none", ""):
        return ()
    chosen = KINDS if value == "all" else tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(KINDS)}, all or none")
    return chosen


@check.command()
@click.option("--time", "seconds", default=60.0, show_default=True, type=click.FloatRange(1),
              help="Seconds of workload under faults.")
@click.option("--clients", default=5, show_default=True, type=click.IntRange(1, 64))
@click.option("--accounts", default=8, show_default=True, type=click.IntRange(2, 1000))
@click.option("--nemesis", "kinds", default="all", show_default=True,
              help=f"Fault kinds: {', '.join(KINDS)}, all or none.")
@click.option("--seed", default=1, show_default=True)
@click.option("--results", type=click.Path(path_type=Path),
              help="Directory for the history, node logs and report (default: a new one under "
                   ".quorapay/results).")
@click.option("--liveness-bound", default=30.0, show_default=True,
              help="Seconds after healing within which a write must succeed.")
@json_option
@pass_app
def bank(app: AppContext, seconds: float, clients: int, accounts: int, kinds: str, seed: int,
         results: Path | None, liveness_bound: float, as_json: bool) -> None:
    """Transfers and reads under faults; then check every answer against the committed log.
    Ctrl-C stops the clients and the faults, undoes the faults, and checks what happened."""
    options = BankOptions(seconds=seconds, clients=clients, accounts=accounts,
                          nemesis=_kinds(kinds), seed=seed, results=results,
                          liveness_bound=liveness_bound)

    async def go() -> BankOutcome:
        with progress("setting up", total=seconds, as_json=as_json, counted=False) as shown:
            async with on_interrupt() as interrupt:
                return await run_bank(app.cluster, options, interrupt,
                                      on_progress=lambda elapsed, text: shown.update(
                                          completed=elapsed, text=text))
    outcome = run(go)
    emit(as_json, outcome_json(outcome), describe(outcome.report) + f"\nresults: {outcome.results}")
    if outcome.interrupted:
        raise Failed(f"interrupted: the history so far was checked ({outcome.report.verdict.value})"
                     f"; results in {outcome.results}", exit_code=130)
    verdict = outcome.report.verdict
    if verdict.exit_code:
        raise Failed(f"check {verdict.value}", exit_code=verdict.exit_code)
