"""init, up, down, status."""

from __future__ import annotations

from pathlib import Path

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress
from quorapay.cluster import supervisor, zookeeper
from quorapay.config import default_cluster, parse_config, render
from quorapay.logs.lines import FORMATS as LOG_FORMATS
from quorapay.security.issue import check_owner, ensure_secrets
from quorapay.security.secrets import SecretsDir


@cli.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option("--name", default="quorapay-local", show_default=True)
@click.option("--base-port", default=7100, show_default=True, type=click.IntRange(1024, 65000),
              help="Node i listens for peers on base+i and for clients on base+100+i.")
@click.option("--zookeeper-port", default=21810, show_default=True,
              type=click.IntRange(1024, 65535))
@click.option("--zookeeper-servers", type=click.Choice(["1", "3"]), default="1",
              show_default=True, help="Local ZooKeeper: a standalone server or an ensemble of "
                                      "three (on the ports from --zookeeper-port on).")
@click.option("--zookeeper-hosts", default=None, metavar="HOST:PORT,...",
              help="Use this external ZooKeeper instead of a local one.")
@click.option("--proxies/--no-proxies", default=True, show_default=True,
              help="Put the chaos proxy on every link of a local cluster (network faults).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing cluster file.")
@click.option("--secrets-only", is_flag=True,
              help="Keep the cluster file; create whatever of its secrets is missing.")
@pass_app
def init(app: AppContext, nodes: int, name: str, base_port: int, zookeeper_port: int,
         zookeeper_servers: str, zookeeper_hosts: str | None, proxies: bool, log_format: str,
         force: bool, secrets_only: bool) -> None:
    """Write a cluster file, with every key, and create its secrets: a CA, a certificate per
    node, the operator and payer credentials, a ZooKeeper password. Its run, data and secrets
    dirs are in .quorapay/NAME/ next to it."""
    path: Path = app.config_path
    if not secrets_only:
        if path.exists() and not force:
            raise Failed(f"{path} exists (use --force to overwrite it, or --secrets-only to "
                         "create its missing secrets)")
        hosts = tuple(h.strip() for h in (zookeeper_hosts or "").split(",") if h.strip())
        if zookeeper_hosts is not None and not hosts:
            raise click.BadParameter("name at least one HOST:PORT",
                                     param_hint="--zookeeper-hosts")
        text = render(default_cluster(nodes=nodes, name=name, base_port=base_port,
                                      zookeeper_port=zookeeper_port,
                                      zookeeper_servers=int(zookeeper_servers),
                                      zookeeper_hosts=hosts, proxies=proxies,
                                      log_format=log_format))
        check_owner(parse_config(path, text))  # valid, and its secrets its own, before
        try:  # anything is written
            path.write_text(text)
        except OSError as exc:
            raise Failed(f"cannot write {path}: {exc.strerror}") from None
        where = f"external ZooKeeper at {','.join(hosts)}" if hosts else (
            f"ZooKeeper on 127.0.0.1:{zookeeper_port}" if zookeeper_servers == "1" else
            f"3 ZooKeeper servers on 127.0.0.1:{zookeeper_port}-{zookeeper_port + 2}")
        click.echo(f"wrote {path}: {nodes} node(s), {where}")
    cluster = app.cluster
    credential = SecretsDir(cluster.security.secrets_dir).zookeeper
    new_credential = not credential.exists() and zookeeper.local_data_exists(cluster)
    if new_credential:  # the znodes' ACLs name the old one: forget them, or nothing works
        zookeeper.reset_local_data(cluster)
    written = ensure_secrets(cluster)
    folder = cluster.security.secrets_dir
    click.echo(f"secrets in {folder}: " + (f"created {len(written)} file(s)" if written
                                           else "all present"))
    if new_credential:
        click.echo("a new ZooKeeper credential: reset the local ZooKeeper's data, whose ACLs "
                   "named the old one (coordination state only: the nodes rebuild it, and "
                   "their ledgers are untouched)")


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for a leader.")
@json_option
@pass_app
def up(app: AppContext, timeout: float, as_json: bool) -> None:
    """Start ZooKeeper and every node that is not running; wait until a leader serves."""
    async def go() -> supervisor.UpReport:
        with progress("starting", total=None, as_json=as_json) as shown:
            return await supervisor.up(app.cluster, timeout=timeout,
                                       on_progress=lambda text: shown.update(text=text))
    report = run(go)
    started = ", ".join(report.started) or "nothing (all running)"
    emit(as_json, {"started": report.started, "already_running": report.already_running,
                   "leader": report.leader, "epoch": report.epoch},
         f"started: {started}\nleader: {report.leader} (epoch {report.epoch})\n"
         f"logs: {app.cluster.run_dir / 'logs'}")


@cli.command()
@json_option
@pass_app
def down(app: AppContext, as_json: bool) -> None:
    """Stop every node and the local ZooKeeper."""
    stopped = supervisor.down(app.cluster)
    emit(as_json, {"stopped": stopped}, f"stopped: {', '.join(stopped) or 'nothing was running'}")
