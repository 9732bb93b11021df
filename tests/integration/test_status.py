"""`quorapay status` as an operator's health check: the verdict and exit code follow the cluster
through a cut-off follower, a lagging one, a node down and a lost majority; `--watch` refreshes
until Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from tests.integration.helpers import kill, leader, local_cluster_file

pytestmark = pytest.mark.integration
QUORAPAY = [sys.executable, "-m", "quorapay"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path_factory.mktemp("status"), name="status")
    trio.run(supervisor.up, cluster)
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


def status(cluster: ClusterConfig, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QUORAPAY, "-c", str(cluster.path), "status", *extra],
                          capture_output=True, text=True, timeout=60)


def until(cluster: ClusterConfig, wanted: str, timeout: float = 30.0, *,
          node: tuple[str, str] | None = None) -> dict[str, Any]:
    """Ask `status --json` until the cluster's state is `wanted` (and `node`'s, if given, is
    `node[1]`); return that report, with the exit code."""
    deadline = time.monotonic() + timeout
    while True:
        shown = status(cluster, "--json")
        report = json.loads(shown.stdout)
        if report["health"]["state"] == wanted and (
                node is None or report["nodes"][node[0]]["state"] == node[1]):
            return {**report, "exit": shown.returncode}
        assert time.monotonic() < deadline, report["health"]
        time.sleep(0.2)


def test_watch_refreshes_in_place_until_ctrl_c(local: ClusterConfig, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen([*QUORAPAY, "-c", str(local.path), "status", "--watch", "0.2"],
                               stdin=terminal, stdout=terminal, stderr=terminal,
                               start_new_session=True, cwd=tmp_path)
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 60
    while shown.count(b"healthy: ") < 3:  # three refreshes, drawn over each other
        assert time.monotonic() < deadline and process.poll() is None, shown[-2000:]
        if select.select([controller], [], [], 0.5)[0]:
            shown += os.read(controller, 65536)
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)
    os.close(controller)
    assert process.returncode == 0, shown[-2000:]
    assert b"\x1b[" in shown  # the cursor moved back: refreshed in place
    assert b"Traceback" not in shown


def test_watch_as_json_prints_a_report_per_line(local: ClusterConfig, tmp_path: Path) -> None:
    process = subprocess.Popen([*QUORAPAY, "-c", str(local.path), "status", "--watch", "0.2",
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, cwd=tmp_path)
    assert process.stdout is not None
    reports = [json.loads(process.stdout.readline()) for _ in range(3)]
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert all(r["health"]["state"] == "healthy" for r in reports)
    assert "Traceback" not in err


def test_the_verdict_and_exit_code_follow_the_cluster(local: ClusterConfig) -> None:
    healthy = status(local)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "healthy: " in healthy.stdout and "3 of 3 nodes ok" in healthy.stdout
    serving = trio.run(leader, local).node
    follower, other = [n.id for n in local.nodes if n.id != serving]
    cut = subprocess.run([*QUORAPAY, "-c", str(local.path), "chaos", "isolate", follower],
                         capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0, cut.stderr
    degraded = until(local, "degraded", node=(follower, "isolated"))
    assert degraded["exit"] == 0  # a leader still serves with a majority
    assert degraded["nodes"][follower]["state"] == "isolated"
    table = status(local)
    assert table.returncode == 0 and f"({follower} isolated)" in table.stdout, table.stdout
    subprocess.run([*QUORAPAY, "-c", str(local.path), "chaos", "heal"], check=True,
                   capture_output=True, timeout=60)
    until(local, "healthy")
    lagging = _lagging_behind_a_slow_link(local, serving, follower)
    assert lagging["exit"] == 0
    assert lagging["nodes"][follower]["state"] == "lagging"
    assert lagging["nodes"][follower]["lag_seconds"] > 1
    until(local, "healthy")
    kill(local, follower)
    one_down = until(local, "degraded", node=(follower, "down"))
    assert one_down["exit"] == 0
    assert one_down["nodes"][follower]["state"] == "down"
    kill(local, other)
    gone = until(local, "no leader")  # the leader hears no majority: it steps down
    assert gone["exit"] == 2
    table = status(local)
    assert table.returncode == 2 and "NO LEADER: no node serves; 0 of 3 nodes ok" in table.stdout
    assert table.stderr == ""


def _lagging_behind_a_slow_link(cluster: ClusterConfig, serving: str,
                                follower: str) -> dict[str, Any]:
    """Delay the leader's messages to `follower` by 1.5 s under a workload: it applies what
    was committed 1.5 s of log ago. Returns the report that says so; the delay is healed."""
    chaos = [*QUORAPAY, "-c", str(cluster.path), "chaos"]
    subprocess.run([*chaos, "delay", serving, follower, "1500ms"], check=True,
                   capture_output=True, timeout=60)
    workload = subprocess.Popen([*QUORAPAY, "-c", str(cluster.path), "workload", "--transfers",
                                 "200000", "--clients", "4"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        return until(cluster, "degraded", timeout=60, node=(follower, "lagging"))
    finally:
        os.killpg(workload.pid, signal.SIGINT)
        _, err = workload.communicate(timeout=60)
        assert workload.returncode == 130, err
        subprocess.run([*chaos, "heal"], check=True, capture_output=True, timeout=60)
