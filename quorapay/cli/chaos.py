"""`quorapay chaos ...`: inject faults into the running local cluster."""

from __future__ import annotations

import click

from quorapay.chaos.kill import kill_leader
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import cli


@cli.group()
def chaos() -> None:
    """Inject faults."""


@chaos.command("kill-leader")
@click.option("--timeout", default=60.0, show_default=True,
              help="Seconds to wait for a write to commit again.")
@json_option
@pass_app
def kill_leader_command(app: AppContext, timeout: float, as_json: bool) -> None:
    """kill -9 the leader; report the new leader and the time until a write committed."""
    report = run(lambda: kill_leader(app.cluster, timeout=timeout))
    emit(as_json, report,
         f"killed {report.killed} (pid {report.pid}, leader of epoch {report.old_epoch})\n"
         f"new leader: {report.new_leader} (epoch {report.new_epoch})\n"
         f"writes committed again after {report.seconds_to_commit:.2f}s "
         f"(index {report.committed_index})\n"
         f"bring {report.killed} back with `quorapay up`")
