"""`quorapay workload`: random transfers from concurrent clients, outcomes recorded."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.workload.transfers import run_workload


@cli.command()
@click.option("--transfers", default=200, show_default=True, type=click.IntRange(1))
@click.option("--accounts", default=10, show_default=True, type=click.IntRange(2, 10_000))
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent clients, each with its own connection.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Transfers per request.")
@click.option("--seed", default=1, show_default=True)
@click.option("--run-id", default=None, help="Prefix of the transfer ids (default: random).")
@click.option("--record", type=click.Path(path_type=Path),
              help="Append every outcome to this JSONL file (for `verify --acknowledged`).")
@json_option
@pass_app
def workload(app: AppContext, transfers: int, accounts: int, clients: int, batch: int, seed: int,
             run_id: str | None, record: Path | None, as_json: bool) -> None:
    """Send random transfers between funded accounts and report the outcomes."""
    report = run(lambda: run_workload(app.cluster, run=run_id or f"w{uuid.uuid4().hex[:8]}",
                                      transfers=transfers, accounts=accounts, clients=clients,
                                      batch=batch, seed=seed, record=record))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
    emit(as_json, report, f"run {report.run}: {report.transfers} transfers in "
                          f"{report.seconds:.2f}s ({report.per_second}/s): {outcomes}")
    if report.outcomes.get("unknown") or report.outcomes.get("unavailable"):
        raise Failed("some transfers got no definitive outcome")
