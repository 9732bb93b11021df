"""`quorapay bench`: benchmarks, run by hand (figures in docs/04-evaluation)."""

from __future__ import annotations

import click

from quorapay.bench.tls import MODES, POINTS, Row, run_bench
from quorapay.cli.context import emit, json_option, run
from quorapay.cli.main import cli
from quorapay.cli.progress import progress


@cli.group()
def bench() -> None:
    """Benchmarks (they start clusters of their own on free ports)."""


@bench.command("tls")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(1, 600),
              help="Measured seconds per point (after a second of warm-up).")
@json_option
def tls_command(rounds: int, seconds: float, as_json: bool) -> None:
    """What TLS, client certificates and ZooKeeper ACLs cost: the same points on a secure and
    an insecure cluster, in turns, medians of the rounds."""
    total = rounds * len(MODES) * len(POINTS)

    async def go() -> list[Row]:
        done = 0
        with progress("points", total=total, as_json=as_json) as shown:
            def measured(line: str) -> None:
                nonlocal done
                done += 1
                shown.update(completed=done)
                if not as_json:
                    click.echo(line, err=True)
            return await run_bench(rounds, seconds, progress=measured)
    rows = run(go)
    table = [f"{'clients x batch':16} {'TLS /s':>9} {'p50':>7} {'p99':>7}   {'no TLS /s':>9} "
             f"{'p50':>7} {'p99':>7}   ratio"]
    for row in rows:
        p, t, i = row.point, row.tls, row.insecure
        table.append(f"{p.clients:>2} x {p.batch:<11} {t.transfers_per_s:>9} {t.p50_ms:>6}ms "
                     f"{t.p99_ms:>6}ms   {i.transfers_per_s:>9} {i.p50_ms:>6}ms {i.p99_ms:>6}ms "
                     f"  {row.ratio}")
    emit(as_json, [{"clients": r.point.clients, "batch": r.point.batch, "tls": r.tls,
                    "insecure": r.insecure, "ratio": r.ratio} for r in rows], "\n".join(table))
