"""`quorapay logs`: the logs of a local cluster's processes, merged by time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import msgspec
import trio

from quorapay.cli.context import AppContext, pass_app, run
from quorapay.cli.main import cli
from quorapay.config import LOG_LEVELS, ClusterConfig
from quorapay.interrupt import on_interrupt
from quorapay.logs.lines import LogLine
from quorapay.logs.merge import LogsError, Tail, keep, merged, since_time

FOLLOW_POLL_SECONDS = 0.25


@cli.command("logs")
@click.argument("names", nargs=-1, metavar="[NODE|proxy]...")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only lines from then on: a duration ago (90s, 5m, 2h, 1d) or an ISO 8601 "
                   "time (UTC unless it says otherwise).")
@click.option("--level", type=click.Choice(LOG_LEVELS), default="DEBUG", show_default=True,
              help="Only lines at this level or above.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: time, node, level, logger, message, fields.")
@pass_app
def logs(app: AppContext, names: tuple[str, ...], follow: bool, since: str | None,
         level: str, as_json: bool) -> None:
    """Print the logs of the nodes (and the chaos proxy) of a cluster started with `up`,
    merged by time. Names choose processes (default: all of them)."""
    cluster = app.cluster
    sources = log_sources(cluster, names)
    try:
        start = since_time(since) if since is not None else ""
    except LogsError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if not any(path.exists() for path in sources.values()):
        raise click.ClickException(f"no logs yet in {cluster.run_dir / 'logs'} (the cluster "
                                   "has not been started with `quorapay up`)")
    try:
        if follow:
            run(_follow, sources, start, level, as_json)
            return
        for line in merged(sources, since=start, level=level):
            _print(line, as_json)
    except BrokenPipeError:  # `quorapay logs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def log_sources(cluster: ClusterConfig, names: tuple[str, ...]) -> dict[str, Path]:
    """The log file of each process named (every node and the proxy when none is)."""
    known = [*cluster.node_ids, "proxy"]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(f"{', '.join(map(repr, unknown))}: not a process of this "
                                 f"cluster ({', '.join(known)})", param_hint="NODE")
    folder = cluster.run_dir / "logs"
    return {name: folder / f"{name}.log" for name in (names or known)}


async def _follow(sources: dict[str, Path], since: str, level: str, as_json: bool) -> None:
    """What is there, then new records as they come, until Ctrl-C (exit 0)."""
    tails = [Tail(name, path) for name, path in sources.items()]
    async with on_interrupt() as interrupt:
        while not interrupt.happened:
            batch = sorted((line for tail in tails for line in tail.records()),
                           key=lambda line: line.time)
            for line in keep(batch, since=since, level=level):
                _print(line, as_json)
            with trio.move_on_after(FOLLOW_POLL_SECONDS):
                await interrupt.requested.wait()


def _print(line: LogLine, as_json: bool) -> None:
    click.echo(msgspec.json.encode(line).decode() if as_json else line.text())
