"""`quorapay workload`: random transfers from concurrent clients, outcomes recorded."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress
from quorapay.interrupt import on_interrupt
from quorapay.workload.transfers import WorkloadReport, run_workload


@cli.command()
@click.option("--transfers", default=200, show_default=True, type=click.IntRange(1))
@click.option("--accounts", default=10, show_default=True, type=click.IntRange(2, 10_000))
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent clients, each with its own connection.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Transfers per request.")
@click.option("--seed", default=1, show_default=True)
@click.option("--run-id", default=None, help="Prefix of the transfer ids (default: random).")
@click.option("--prefix", default=None,
              help="Prefix of the run's accounts, PREFIX-bank and PREFIX-acct-N (default: the "
                   "run id: every run has accounts of its own).")
@click.option("--record", type=click.Path(path_type=Path),
              help="Append every outcome to this JSONL file as it arrives (for `verify "
                   "--acknowledged`).")
@json_option
@pass_app
def workload(app: AppContext, transfers: int, accounts: int, clients: int, batch: int, seed: int,
             run_id: str | None, prefix: str | None, record: Path | None, as_json: bool) -> None:
    """Send random transfers between funded accounts and report the outcomes. Ctrl-C stops
    the clients after the request each has in flight; what they were told is kept."""
    async def go() -> WorkloadReport:
        with progress("transfers", total=transfers, as_json=as_json) as shown:
            async with on_interrupt() as interrupt:
                return await run_workload(
                    app.cluster, run=run_id or f"w{uuid.uuid4().hex[:8]}", transfers=transfers,
                    accounts=accounts, clients=clients, batch=batch, seed=seed, record=record,
                    prefix=prefix, interrupt=interrupt,
                    on_progress=lambda done: shown.update(completed=done))
    report = run(go)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())) or "none"
    retries = ", ".join(f"{k} {v}" for k, v in report.retries.items())
    emit(as_json, report, f"run {report.run} (accounts {report.prefix}-*): {report.transfers} "
                          f"transfers in {report.seconds:.2f}s ({report.per_second}/s): "
                          f"{outcomes}" + (f"; requests retried: {retries}" if retries else ""))
    if report.interrupted:
        kept = f"; their outcomes are in {record}" if record is not None else ""
        raise Failed(f"interrupted after {report.transfers} of {transfers} transfers{kept}",
                     exit_code=130)
    if report.outcomes.get("unknown") or report.outcomes.get("unavailable"):
        raise Failed("some transfers got no definitive outcome")
