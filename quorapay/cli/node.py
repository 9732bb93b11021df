"""`quorapay node run`: one node process in the foreground (what `up` starts)."""

from __future__ import annotations

import logging
import sys

import click
import trio

from quorapay.cli.context import AppContext, pass_app
from quorapay.cli.main import cli
from quorapay.node.run import run_node


@cli.group()
def node() -> None:
    """Run a node process."""


@node.command("run")
@click.option("--node", "node_id", required=True, help="The node id from the cluster file.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@pass_app
def run_command(app: AppContext, node_id: str, log_level: str) -> None:
    """Run one node in the foreground until SIGTERM or Ctrl-C."""
    cluster = app.cluster
    cluster.node(node_id)
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format=f"%(asctime)s {node_id} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # we report ZooKeeper states ourselves
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)
    trio.run(run_node, cluster, node_id)
