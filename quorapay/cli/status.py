"""`quorapay status`: is my cluster healthy? A node per row, a verdict, an exit code to act on."""

from __future__ import annotations

from contextlib import nullcontext

import click
import msgspec
import trio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from quorapay.api import schema as api
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import cli
from quorapay.cluster import supervisor
from quorapay.cluster.health import Health, NodeHealth, assess
from quorapay.config import ClusterConfig
from quorapay.interrupt import on_interrupt


@cli.command()
@click.option("--watch", "every", type=click.FloatRange(min=0.2), default=None,
              metavar="SECONDS", help="Refresh in place every SECONDS until Ctrl-C.")
@json_option
@pass_app
def status(app: AppContext, every: float | None, as_json: bool) -> None:
    """Each node's role, state (ok, lagging, isolated, suspended, clock alarm, down), lag behind
    the leader, last contact with it, ZooKeeper session and clock; then the cluster's verdict.
    Exit code: 0 when a leader serves with a majority of nodes ok, 2 with no leader, 3 when the
    leader lacks a majority of ok nodes."""
    cluster = app.cluster
    if every is not None:
        run(_watch, cluster, every, as_json)
        return
    found = run(supervisor.statuses, cluster)
    health = assess(found, election_timeout=cluster.timing.election_timeout)
    if as_json:
        emit(True, report(found, health), "")
    else:
        click.echo(render(found, health))
    if health.state.exit_code:  # the verdict is the last line printed: no more to say
        click.get_current_context().exit(health.state.exit_code)


async def _watch(cluster: ClusterConfig, every: float, as_json: bool) -> None:
    """Refresh until Ctrl-C, which ends the watch (exit 0): in place for people, one JSON
    object per line for programs."""
    async with on_interrupt() as interrupt:
        live = None if as_json else Live(Text("asking the nodes..."), console=Console(),
                                          auto_refresh=False)
        with live if live is not None else nullcontext(), interrupt.work():
            while not interrupt.happened:
                found = await supervisor.statuses(cluster)
                health = assess(found, election_timeout=cluster.timing.election_timeout)
                if live is None:
                    emit(True, report(found, health), "")
                else:
                    live.update(Text(render(found, health)
                                     + f"\n(every {every:g}s; Ctrl-C stops)"), refresh=True)
                with trio.move_on_after(every):
                    await interrupt.requested.wait()


def report(found: dict[str, api.NodeStatus | str], health: Health) -> dict[str, object]:
    """What `status --json` prints (docs/01-api)."""
    return {"leader": health.leader, "epoch": health.epoch,
            "health": {"state": health.state.value, "ok": health.ok,
                       "nodes": len(health.nodes), "summary": health.summary()},
            "nodes": {node: _node_json(s, health.nodes[node]) for node, s in found.items()}}


def _node_json(found: api.NodeStatus | str, health: NodeHealth) -> dict[str, object]:
    judged = {"state": health.state.value, "lag_entries": health.lag_entries,
              "lag_seconds": health.lag_seconds, "contact_seconds": health.contact_seconds}
    if not isinstance(found, api.NodeStatus):
        return {"error": found, **judged}
    value = msgspec.to_builtins(found)
    assert isinstance(value, dict)
    return {**value, **judged}


def render(found: dict[str, api.NodeStatus | str], health: Health) -> str:
    lines = [f"{'node':6} {'role':10} {'state':11} {'epoch':>5} {'commit':>7} {'applied':>7} "
             f"{'lag':>13} {'contact':>8}  {'zookeeper':10} {'clock':>9}"]
    for node_id, s in found.items():
        h = health.nodes[node_id]
        if not isinstance(s, api.NodeStatus):
            lines.append(f"{node_id:6} {'-':10} {h.state.value:11} {s}")
            continue
        lag = "-" if h.lag_entries is None else (
            f"{h.lag_entries} / {h.lag_seconds:.1f}s" if h.lag_seconds is not None
            else f"{h.lag_entries}")
        contact = "leader" if s.role == "leader" else (
            "-" if h.contact_seconds is None else f"{h.contact_seconds:.1f}s")
        lines.append(f"{node_id:6} {s.role:10} {h.state.value:11} {s.epoch:>5} "
                     f"{s.commit_index:>7} {s.applied_index:>7} {lag:>13} {contact:>8}  "
                     f"{s.zookeeper:10} {_clock(s):>9}")
    lines.append(health.summary())
    answered = [s for s in found.values() if isinstance(s, api.NodeStatus)]
    if any(not s.tls for s in answered):
        lines.append("security: INSECURE (security.insecure_benchmark_only): no TLS, no "
                     "credentials, no ZooKeeper ACLs -- benchmarks only")
    for node_id, s in found.items():
        if isinstance(s, api.NodeStatus) and s.zookeeper_warning:
            lines.append(f"ZooKeeper, seen by {node_id}: {s.zookeeper_warning}")
    clocks = {n: s.clock for n, s in found.items()
              if isinstance(s, api.NodeStatus) and s.clock is not None}
    if clocks:
        lines.append("clocks (each peer's offset from the node, ± half the probe's round trip):")
        lines += [f"  {node_id:6} {_clock_line(clock)}" for node_id, clock in clocks.items()]
    return "\n".join(lines)


def _clock(status: api.NodeStatus) -> str:
    """The largest offset the node measured to a peer (its clock health at a glance)."""
    clock = status.clock
    if clock is None or not clock.peers:
        return "-"
    worst = max(clock.peers.values(), key=lambda c: abs(c.offset_ms))
    return f"{worst.offset_ms:+.0f}ms" + ("!" if clock.alarm else "")


def _clock_line(clock: api.ClockStatus) -> str:
    peers = ", ".join(f"{p} {c.offset_ms:+.0f}±{c.error_ms:.0f} ms"
                      for p, c in sorted(clock.peers.items())) or "not measured yet"
    line = (f"wall {clock.wall} ({clock.injected_offset_ms:+d} ms from the machine"
            f"{'; ' + clock.fault if clock.fault else ''}); peers: {peers}")
    if clock.alarm:
        line += f"; ALARM: off from a majority by more than {clock.max_offset_ms} ms"
    if clock.hlc_ahead:
        line += "; its timestamps run ahead of its clock: not standing for election"
    if clock.refusing:
        line += f"; refusing messages from {', '.join(clock.refusing)}"
    return line
