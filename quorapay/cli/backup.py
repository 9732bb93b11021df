"""`quorapay backup`, `quorapay restore` and `quorapay node rebuild`: one node's data."""

from __future__ import annotations

from pathlib import Path

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import cli
from quorapay.cli.node import node as node_group
from quorapay.cli.progress import progress
from quorapay.cluster.backup import rebuild, restore, take_backup


@cli.command("backup")
@click.argument("node_id", metavar="NODE")
@click.argument("dest", metavar="FILE", type=click.Path(path_type=Path))
@json_option
@pass_app
def backup_command(app: AppContext, node_id: str, dest: Path, as_json: bool) -> None:
    """Copy NODE's database to FILE while it runs: one consistent point (its applied index),
    checked as the node would load it. Run it on NODE's host."""
    node = app.cluster.node(node_id)
    with progress(f"backing {node.id} up", total=None, as_json=as_json):
        info = take_backup(app.cluster, node, dest)
    emit(as_json, info, f"{info.file}: {node.id} at applied index {info.applied_index} (log "
                        f"{info.log_start + 1}..{info.last_index}), {info.accounts} accounts, "
                        f"{info.transfers} transfers, {info.bytes} bytes in {info.seconds:.2f}s")


@cli.command("restore")
@click.argument("node_id", metavar="NODE")
@click.argument("source", metavar="FILE",
                type=click.Path(path_type=Path, exists=True, dir_okay=False))
@json_option
@pass_app
def restore_command(app: AppContext, node_id: str, source: Path, as_json: bool) -> None:
    """Seed the stopped NODE from a backup FILE (of any node of this cluster); `quorapay up`
    then starts it and it catches up from the leader. Its former database is moved aside."""
    cluster = app.cluster
    node = cluster.node(node_id)
    report = restore(cluster, node, source)
    emit(as_json, report, f"{node.id} restored from {source} ({report.backup.node} at applied "
                          f"index {report.backup.applied_index}), promising epoch "
                          f"{report.promised_epoch}"
                          + (f"; its former database is in {report.previous}"
                             if report.previous else "")
                          + "; start it with `quorapay up`")


@node_group.command("rebuild")
@click.argument("node_id", metavar="NODE")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for it to catch up.")
@json_option
@pass_app
def rebuild_command(app: AppContext, node_id: str, timeout: float, as_json: bool) -> None:
    """With every other node up: hand leadership over if NODE leads, stop it, give it an empty
    database (the former one is kept in a previous-* folder of its data dir), start it and wait
    until it has caught up from the leader (through a snapshot if the others compacted)."""
    cluster = app.cluster
    node = cluster.node(node_id)
    with progress(f"rebuilding {node.id}", total=None, as_json=as_json) as shown:
        report = run(lambda: rebuild(cluster, node, timeout=timeout,
                                     on_progress=lambda text: shown.update(text=text)))
    emit(as_json, report, f"{node.id} rebuilt: caught up to index {report.caught_up_index} in "
                          f"{report.seconds:.1f}s, promising epoch {report.promised_epoch}")
