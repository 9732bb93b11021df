"""`quorapay verify`: every node's committed log and ledger, compared; money conserved."""

from __future__ import annotations

from pathlib import Path

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import cli
from quorapay.verify.checks import Verdict, check
from quorapay.verify.collect import collect, load_acknowledged


@cli.command()
@click.option("--acknowledged", "record", type=click.Path(path_type=Path),
              help="A workload record (JSONL): check each transfer is on every node as the "
                   "client was told.")
@click.option("--settle", default=15.0, show_default=True,
              help="Seconds to wait for every node to reach the same applied index.")
@click.option("--deep", is_flag=True,
              help="Also replay each node's whole log, hash its log afresh and recount its "
                   "ledger's rows (costs each node its whole ledger, not what changed).")
@json_option
@pass_app
def verify(app: AppContext, record: Path | None, settle: float, deep: bool,
           as_json: bool) -> None:
    """Compare every node's log and ledger; exit 0 valid, 1 invalid, 2 unknown."""
    acknowledged = load_acknowledged(record) if record else []
    evidence = run(lambda: collect(app.cluster, settle=settle, acknowledged=acknowledged,
                                   deep=deep))
    report = check(evidence)
    lines = [f"{report.verdict.value.upper()}: {len(report.nodes)} node(s) compared at index "
             f"{report.common_index}" + (f", {len(acknowledged)} acknowledged transfer(s) "
                                         "checked" if acknowledged else "")]
    lines += [f"  ok: {c}" for c in report.checked] if report.verdict is Verdict.VALID else []
    lines += [f"  - {f}" for f in report.findings]
    emit(as_json, report, "\n".join(lines))
    if report.verdict is not Verdict.VALID:
        raise SystemExit(report.verdict.exit_code)
