"""`quorapay chaos ...`: inject faults into the running local cluster, and undo them."""

from __future__ import annotations

import re
from collections.abc import Callable

import click
import trio

from quorapay.chaos import network, processes
from quorapay.chaos.kill import kill_leader
from quorapay.chaos.links import Faults, read_faults, write_faults
from quorapay.chaos.network import ChaosError
from quorapay.chaos.proxy import run_proxy
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import cli
from quorapay.clock.overrides import active_skews, clear_skews
from quorapay.cluster import runtime
from quorapay.cluster.plan import Plan, read_plan
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.logs.lines import configure

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")


@cli.group()
def chaos() -> None:
    """Inject faults (and undo them: heal, resume, restart)."""


# ---------------------------------------------------------------------------- processes

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


def _process_verb(name: str, act: Callable[[ClusterConfig, NodeConfig], int], doing: str,
                  undo: str, help_text: str, *, undoes: str = "") -> None:
    @chaos.command(name, help=help_text)
    @click.argument("target", metavar="NODE|leader")
    @json_option
    @pass_app
    def command(app: AppContext, target: str, as_json: bool) -> None:
        node = processes.recall(app.cluster, target, undoes) if undoes else \
            run(processes.resolve, app.cluster, target)
        pid = act(app.cluster, node)
        if target == processes.LEADER and not undoes:
            processes.remember(app.cluster, name, node)
        elif target == processes.LEADER:
            processes.forget(app.cluster, undoes)
        emit(as_json, {"verb": name, "node": node.id, "pid": pid},
             f"{doing} {node.id} (pid {pid})" + (f"; undo with `quorapay chaos {undo} {node.id}`"
                                                 if undo else ""))


_process_verb("kill", processes.kill, "killed (SIGKILL)", "restart",
              "kill -9 NODE or the leader.")
_process_verb("pause", processes.pause, "paused (SIGSTOP)", "resume",
              "Stop NODE or the leader (SIGSTOP) until resumed.")
_process_verb("resume", processes.resume, "resumed (SIGCONT)", "",
              "Resume a paused NODE (SIGCONT); `leader`: the node `pause leader` chose.",
              undoes="pause")
_process_verb("restart", processes.restart, "restarted", "",
              "Start a killed NODE again; `leader`: the node `kill leader` chose.",
              undoes="kill")


@chaos.group("zk")
def zk() -> None:
    """ZooKeeper servers of a local cluster (kill, restart)."""


@zk.command("kill")
@click.argument("server", type=int, required=False)
@json_option
@pass_app
def zk_kill(app: AppContext, server: int | None, as_json: bool) -> None:
    """kill -9 a ZooKeeper server (default: 1)."""
    chosen = processes.zk_kill(app.cluster, server)
    emit(as_json, {"verb": "zk kill", "server": chosen},
         f"killed ZooKeeper server {chosen}; undo with `quorapay chaos zk restart {chosen}`")


@zk.command("restart")
@click.argument("server", type=int, required=False)
@json_option
@pass_app
def zk_restart(app: AppContext, server: int | None, as_json: bool) -> None:
    """Start a killed ZooKeeper server again (default: 1)."""
    chosen = processes.zk_restart(app.cluster, server)
    emit(as_json, {"verb": "zk restart", "server": chosen},
         f"restarted ZooKeeper server {chosen}")


# ---------------------------------------------------------------------------- the network

def _edit(app: AppContext, verb: str, change: Callable[[Faults, Plan], tuple[Faults, list[str]]],
          as_json: bool) -> None:
    cluster = app.cluster
    if not runtime.proxied(cluster) or not runtime.plan_path(cluster).exists():
        raise ChaosError("network faults need a local cluster running behind the chaos proxy "
                         "(`quorapay up`; chaos.proxies = true)")
    path = runtime.faults_path(cluster)
    faults, changed = change(read_faults(path), read_plan(runtime.plan_path(cluster)))
    write_faults(path, faults)
    emit(as_json, {"verb": verb, "changed": changed},
         f"{verb}: {', '.join(changed) or 'nothing changed'}"
         + ("; undo with `quorapay chaos heal`" if changed and verb != "heal" else ""))


def _nodes(app: AppContext) -> list[str]:
    return [n.id for n in app.cluster.nodes]


def _named(app: AppContext, *names: str) -> list[str]:
    """Endpoint names, `leader` replaced by the node leading now."""
    return run(processes.resolve_endpoints, app.cluster, list(names))


@chaos.command()
@click.argument("groups", nargs=-1, required=True)
@json_option
@pass_app
def partition(app: AppContext, groups: tuple[str, ...], as_json: bool) -> None:
    """Split nodes into groups: `partition n1,n2 n3`, `partition leader` (nodes left out form
    one more group)."""
    split = [[n for n in g.split(",") if n] for g in groups]
    flat = _named(app, *(n for g in split for n in g))
    named = [[flat.pop(0) for _ in g] for g in split]
    _edit(app, "partition", lambda f, p: network.partition(f, p, _nodes(app), named), as_json)


@chaos.command()
@click.argument("node", metavar="NODE|leader")
@json_option
@pass_app
def isolate(app: AppContext, node: str, as_json: bool) -> None:
    """Cut NODE (or the leader) from every other node (ZooKeeper still reachable)."""
    [node] = _named(app, node)
    _edit(app, "isolate", lambda f, p: network.partition(f, p, _nodes(app), [[node]]), as_json)


@chaos.command("isolate-zk")
@click.argument("node", metavar="NODE|leader")
@json_option
@pass_app
def isolate_zk(app: AppContext, node: str, as_json: bool) -> None:
    """Cut NODE (or the leader) from ZooKeeper (other nodes still reachable)."""
    [node] = _named(app, node)
    app.cluster.node(node)
    _edit(app, "isolate-zk", lambda f, p: network.cut(f, p, [[node], ["zk"]]), as_json)


@chaos.command("majorities-ring")
@json_option
@pass_app
def majorities_ring(app: AppContext, as_json: bool) -> None:
    """Each node sees only its two ring neighbours (5+ nodes): every node sees a majority."""
    _edit(app, "majorities-ring", lambda f, p: network.ring(f, p, _nodes(app)), as_json)


@chaos.command("bridge")
@json_option
@pass_app
def bridge(app: AppContext, as_json: bool) -> None:
    """Two halves that cannot talk, bridged by the middle node (5+ nodes)."""
    _edit(app, "bridge", lambda f, p: network.bridge(f, p, _nodes(app)), as_json)


def _duration_ms(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 200ms or 1.5s")
    value, unit = float(match.group(1)), match.group(2) or "ms"
    return value * 1000 if unit == "s" else value


@chaos.command()
@click.argument("source")
@click.argument("destination")
@click.argument("duration")
@click.option("--jitter", default="0ms", show_default=True, help="Up to this much more, random.")
@json_option
@pass_app
def delay(app: AppContext, source: str, destination: str, duration: str, jitter: str,
          as_json: bool) -> None:
    """Delay traffic from SOURCE to DESTINATION (nodes, leader, zk, client) by DURATION
    (200ms, 1s)."""
    ms, spread = _duration_ms(duration), _duration_ms(jitter)
    source, destination = _named(app, source, destination)
    _edit(app, "delay", lambda f, p: network.delay(f, p, source, destination, ms, spread),
          as_json)


@chaos.command()
@click.argument("source")
@click.argument("destination")
@click.argument("fraction", type=float)
@json_option
@pass_app
def drop(app: AppContext, source: str, destination: str, fraction: float, as_json: bool) -> None:
    """Kill connections from SOURCE to DESTINATION (nodes, leader, zk, client): each chunk
    with probability FRACTION."""
    source, destination = _named(app, source, destination)
    _edit(app, "drop", lambda f, p: network.drop(f, p, source, destination, fraction), as_json)


@chaos.command()
@click.argument("source")
@click.argument("destination")
@json_option
@pass_app
def reset(app: AppContext, source: str, destination: str, as_json: bool) -> None:
    """Close the connections between two endpoints (nodes, leader, zk, client) and refuse new
    ones until healed."""
    source, destination = _named(app, source, destination)
    _edit(app, "reset", lambda f, p: network.reset(f, p, source, destination), as_json)


@chaos.command()
@json_option
@pass_app
def heal(app: AppContext, as_json: bool) -> None:
    """Undo every network and clock fault and resume paused nodes; say which processes are
    left stopped (killed nodes and ZooKeeper servers: `up` or `restart` brings them back)."""
    cluster = app.cluster
    changed = [f"{node} clock" for node in clear_skews(cluster.run_dir)]
    if runtime.proxied(cluster) and runtime.plan_path(cluster).exists():
        path = runtime.faults_path(cluster)
        changed += [line.split(":")[0] for line in network.describe(read_faults(path))]
        write_faults(path, Faults())
    changed += [f"{node} resumed" for node in processes.resume_paused(cluster)]
    processes.forget(cluster, "pause")
    left = processes.not_running(cluster)
    emit(as_json, {"verb": "heal", "changed": changed, "left": left},
         f"heal: {', '.join(changed) or 'nothing changed'}"
         + "".join(f"\nleft: {line}" for line in left))


@chaos.command("status")
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Every fault in effect: network and clock faults, paused and stopped nodes, ZooKeeper."""
    cluster = app.cluster
    lines = network.describe(read_faults(runtime.faults_path(cluster)))
    lines += [f"{node}: wall clock {skew.describe()} (`quorapay chaos heal`)"
              for node, skew in active_skews(cluster.run_dir).items()]
    lines += [f"{node.id}: paused (`quorapay chaos resume {node.id}`)"
              for node in cluster.nodes if processes.paused(cluster, node)]
    lines += processes.not_running(cluster)
    emit(as_json, {"faults": lines}, "\n".join(lines) or "no faults in effect")


@chaos.command("proxy-run", hidden=True)
@pass_app
def proxy_run(app: AppContext) -> None:
    """Run the chaos proxy in the foreground (what `quorapay up` starts)."""
    configure("proxy", level=app.cluster.logging.level, fmt=app.cluster.logging.format)
    plan = read_plan(runtime.plan_path(app.cluster))
    trio.run(run_proxy, plan, runtime.faults_path(app.cluster))
