"""`quorapay bench`: benchmarks, run by hand (figures in docs/04-evaluation)."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from quorapay.bench.failover import FailoverReport, Takeover, run_failover
from quorapay.bench.load import LoadReport, parse_points, run_load
from quorapay.bench.points import Measured, Point
from quorapay.bench.scale import ScaleReport, run_scale
from quorapay.bench.tls import MODES, POINTS, Row, run_bench
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress

out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                          help="Write the JSON result here too.")


@cli.group(invoke_without_command=True)
@click.option("--points", default="1,16,64,16x100", show_default=True,
              help="CLIENTS or CLIENTSxBATCH (transfers per request), comma-separated.")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(0.5, 3600),
              help="Measured seconds per point.")
@click.option("--warm-up", default=1.0, show_default=True, type=click.FloatRange(0, 600),
              help="Seconds of load before each point is measured.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a plot of latency against throughput here (PNG).")
@out_option
@json_option
@click.pass_context
def bench(ctx: click.Context, points: str, seconds: float, warm_up: float, plot: Path | None,
          out: Path | None, as_json: bool) -> None:
    """Closed-loop clients against the running cluster, point by point: throughput, latency
    percentiles, the cluster's CPU per transfer; then every acknowledged transfer is looked up
    (exit 1 if one is missing). `bench failover` and `bench tls` are the other benchmarks."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext)
    assert app is not None
    chosen = parse_points(points)

    async def go() -> LoadReport:
        with progress("bench", total=len(chosen), as_json=as_json) as shown:
            def told(point: Point, measured: Measured | None) -> None:
                if measured is None:
                    shown.update(text=f"point {point} ({seconds:g} s)")
                    return
                shown.update(completed=chosen.index(point) + 1)
                if not as_json:
                    click.echo(f"{point!s:>7}: {measured.transfers_per_s:>9}/s  p50 "
                               f"{measured.p50_ms} ms  p99 {measured.p99_ms} ms", err=True)
            return await run_load(app.cluster, chosen, seconds=seconds, warm_up=warm_up,
                                  progress=told)
    report = run(go)
    document = _document(report, out)
    if plot is not None:
        from quorapay.bench.plot import plot_load
        plot_load(report, plot)
    emit(as_json, document, _load_table(report))
    if not report.valid:
        raise Failed(f"{report.check.missing + report.check.different} acknowledged "
                     f"transfer(s) not in the ledger as sent: {report.check.examples}")


def _document(report: LoadReport | FailoverReport | ScaleReport, out: Path | None
              ) -> dict[str, object]:
    """The report as JSON-ready data with its verdict; written to `out` too, if given."""
    document: dict[str, object] = msgspec.to_builtins(report)
    document["valid"] = report.valid
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(msgspec.json.format(msgspec.json.encode(document)))
    return document


def _load_table(report: LoadReport) -> str:
    lines = [f"{report.cluster}: {report.nodes} nodes, "
             f"{'TLS' if report.tls else 'INSECURE, no TLS'}, "
             f"{'chaos proxy' if report.proxies else 'no proxy'}; {report.seconds:g} s per point "
             f"after {report.warm_up:g} s of warm-up; {report.cores} cores",
             f"{'point':>7} {'transfers/s':>12} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} "
             f"{'failed':>6} {'CPU cores':>9} {'CPU ms/transfer':>15}"]
    for p in report.points:
        name = f"{p.clients}" if p.batch == 1 else f"{p.clients}x{p.batch}"
        lines.append(f"{name:>7} {p.transfers_per_s:>12} {p.p50_ms:>8} {p.p90_ms:>8} "
                     f"{p.p99_ms:>8} {p.p999_ms:>8} {p.failed:>6} {_or_dash(p.cpu_cores):>9} "
                     f"{_or_dash(p.cpu_ms_per_transfer):>15}")
    check = report.check
    lines.append(f"acknowledged transfers in the ledger: {check.found}/{check.acknowledged}"
                 + ("" if check.valid else f" -- MISSING {check.missing}, DIFFERENT "
                                           f"{check.different}: {check.examples}"))
    return "\n".join(lines)


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value}"


@bench.command("failover")
@click.option("--kills", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Leader failures to measure.")
@click.option("--pause", is_flag=True,
              help="Stop the leader (SIGSTOP) instead of killing it; resume it afterwards "
                   "and check that it stepped down.")
@click.option("--clients", default=16, show_default=True, type=click.IntRange(0, 256),
              help="Closed-loop clients writing throughout.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 600),
              help="Seconds each round may take to commit again (and to heal).")
@out_option
@json_option
@pass_app
def failover_command(app: AppContext, kills: int, pause: bool, clients: int, timeout: float,
                     out: Path | None, as_json: bool) -> None:
    """Kill (or pause) the leader of the running local cluster KILLS times under load: the
    time from the signal until a write commits through another node, each time."""
    async def go() -> FailoverReport:
        with progress("failover", total=kills, as_json=as_json) as shown:
            def told(takeover: Takeover) -> None:
                shown.update(completed=takeover.round)
                if not as_json:
                    click.echo(f"round {takeover.round}: {takeover.fault} {takeover.old_leader}"
                               f" -> {takeover.new_leader} committed after "
                               f"{takeover.seconds:.3f} s", err=True)
            return await run_failover(app.cluster, rounds=kills, pause=pause, clients=clients,
                                      timeout=timeout, progress=told)
    report = run(go)
    document = _document(report, out)
    seconds = sorted(t.seconds for t in report.takeovers)
    emit(as_json, document,
         f"{report.fault} of the leader, {len(seconds)} times, {report.clients} clients "
         f"writing (ZooKeeper session timeout {report.session_timeout:g} s):\n"
         f"signal -> next commit: median {report.median_s:.3f} s, max {report.max_s:.3f} s, "
         f"all: {', '.join(f'{s:.3f}' for s in seconds)}\n"
         + ("" if report.fault == "kill" else
            f"old leader fenced after resuming: "
            f"{sum(bool(t.fenced) for t in report.takeovers)}/{len(report.takeovers)}\n")
         + f"acknowledged transfers in the ledger: {report.check.found}/"
           f"{report.check.acknowledged}")
    if not report.valid:
        raise Failed("failover lost an acknowledged transfer or left an old leader unfenced")


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
    emit(as_json, [{"clients": r.point.clients, "batch": r.point.batch, "tls": _brief(r.tls),
                    "insecure": _brief(r.insecure), "ratio": r.ratio} for r in rows],
         "\n".join(table))


def _brief(measured: Measured) -> dict[str, float]:
    return {"transfers_per_s": measured.transfers_per_s, "p50_ms": measured.p50_ms,
            "p99_ms": measured.p99_ms, "failed": measured.failed}


@bench.command("scale")
@click.option("--levels", default="10000,200000,1000000", show_default=True,
              help="Decided transfers to fill the ledger up to, comma-separated, ascending.")
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(0.5, 600),
              help="Measured seconds of each throughput point.")
@click.option("--no-restart", is_flag=True, help="Do not kill and restart a follower.")
@click.option("--no-rebuild", is_flag=True, help="Do not rebuild a follower from nothing.")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(5, 7200),
              help="Seconds a restarted or rebuilt follower may take to catch up.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a plot of throughput and memory against transfers stored (PNG).")
@out_option
@json_option
@pass_app
def scale_command(app: AppContext, levels: str, seconds: float, no_restart: bool,
                  no_rebuild: bool, timeout: float, plot: Path | None, out: Path | None,
                  as_json: bool) -> None:
    """Fill the running cluster's ledger level by level and measure, at each: every node's
    memory, unbatched and batched throughput, verify, a follower's restart and its rebuild
    from nothing. Fills with transfers of its own accounts; run it on a fresh cluster."""
    try:
        wanted = [int(level) for level in levels.split(",")]
    except ValueError:
        raise click.BadParameter("comma-separated numbers of transfers",
                                 param_hint="--levels") from None
    if not wanted or wanted != sorted(wanted) or wanted[0] < 1:
        raise click.BadParameter("positive and ascending", param_hint="--levels")

    async def go() -> ScaleReport:
        with progress("scale", total=None, as_json=as_json) as shown:
            return await run_scale(app.cluster, wanted, seconds=seconds,
                                   restart=not no_restart, rebuild_nodes=not no_rebuild,
                                   timeout=timeout,
                                   progress=lambda text: shown.update(text=text))
    report = run(go)
    document = _document(report, out)
    if plot is not None:
        from quorapay.bench.plot import plot_scale
        plot_scale(report, plot)
    emit(as_json, document, _scale_table(report))
    if not report.valid:
        raise Failed("an acknowledged transfer is missing or verify did not pass: "
                     + "; ".join(p for level in report.levels for p in level.problems))


def _scale_table(report: ScaleReport) -> str:
    lines = [f"{report.cluster}: {report.seconds:g} s per throughput point",
             f"{'transfers':>10} {'fill/s':>8} {'RSS MB (max)':>12} {'16 x 1 /s':>9} "
             f"{'p99':>7} {'16 x 100 /s':>11} {'p99':>7} {'verify':>7} {'restart':>8} "
             f"{'rebuild':>8} {'db MB':>6}"]
    for level in report.levels:
        lines.append(
            f"{level.transfers:>10} {level.fill_per_s:>8} {max(level.rss_mb.values()):>12} "
            f"{level.unbatched.transfers_per_s:>9} {level.unbatched.p99_ms:>6}ms "
            f"{level.batched.transfers_per_s:>11} {level.batched.p99_ms:>6}ms "
            f"{level.verify_seconds:>6}s {_or_dash(level.restart_seconds):>7}s "
            f"{_or_dash(level.rebuild_seconds):>7}s {_or_dash(level.rebuild_mb):>6}")
        streamed = level.rebuild
        if streamed is not None:
            point = streamed.while_streaming
            lines.append(
                f"  rebuild: a {streamed.snapshot_mb} MB snapshot streamed in "
                f"{_or_dash(streamed.stream_seconds)} s ({_or_dash(streamed.stream_mb_per_s)} "
                "MB/s); meanwhile 16 x 1: " + (
                    f"{point.transfers_per_s}/s, p99 {point.p99_ms} ms" if point else "-"))
        lines += [f"  - {problem}" for problem in level.problems]
    check = report.check
    lines.append(f"acknowledged transfers in the ledger: {check.found}/{check.acknowledged}")
    return "\n".join(lines)
