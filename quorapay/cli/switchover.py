"""`quorapay switchover`: a planned leader change, timed."""

from __future__ import annotations

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cluster.switchover import switchover


@cli.command("switchover")
@click.option("--to", "target", default=None, metavar="NODE",
              help="The node to hand leadership to (default: the most caught-up follower).")
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds to wait for a leader to ask, and then for the new one to serve.")
@json_option
@pass_app
def switchover_command(app: AppContext, target: str | None, timeout: float,
                       as_json: bool) -> None:
    """Hand leadership to a caught-up node with no failed or ambiguous client request: the
    leader stops taking new requests (clients retry), answers those it took, waits for the
    target to hold its whole log and gives up leadership to it; the target takes over first.
    With --to naming the leader, nothing is done (exit 0)."""
    cluster = app.cluster
    if target is not None and target not in cluster.node_ids:
        raise click.BadParameter(f"{target!r} is not a node of this cluster "
                                 f"({', '.join(cluster.node_ids)})", param_hint="--to")
    report = run(lambda: switchover(cluster, target, timeout=timeout))
    if report.new_epoch == report.old_epoch:
        text = f"{report.new_leader} leads already (epoch {report.new_epoch}): nothing to do"
    else:
        text = (f"switchover: {report.old_leader} -> {report.new_leader} (epoch "
                f"{report.old_epoch} -> {report.new_epoch}) in {report.seconds:.2f}s; "
                f"{report.target} had caught up after {report.caught_up_seconds:.2f}s; new "
                "requests were told to retry meanwhile")
    emit(as_json, report, text)
    if report.new_leader != report.target:
        raise Failed(f"{report.new_leader} took over instead of {report.target} (which did not "
                     "claim leadership in time)")
