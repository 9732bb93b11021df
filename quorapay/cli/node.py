"""`quorapay node run`: one node process in the foreground (what `up` starts)."""

from __future__ import annotations

import click
import trio

from quorapay.cli.context import AppContext, pass_app
from quorapay.cli.main import cli
from quorapay.config import LOG_LEVELS
from quorapay.logs.lines import configure
from quorapay.node.run import run_node


@cli.group()
def node() -> None:
    """Run a node process."""


@node.command("run")
@click.option("--node", "node_id", required=True, help="The node id from the cluster file.")
@click.option("--log-level", default=None, type=click.Choice(LOG_LEVELS),
              help="Overrides logging.level of the cluster file.")
@pass_app
def run_command(app: AppContext, node_id: str, log_level: str | None) -> None:
    """Run one node in the foreground until SIGTERM or Ctrl-C."""
    cluster = app.cluster
    cluster.node(node_id)
    configure(node_id, level=log_level or cluster.logging.level, fmt=cluster.logging.format)
    trio.run(run_node, cluster, node_id)
