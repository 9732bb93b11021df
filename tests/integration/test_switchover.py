"""`quorapay switchover` under load: ten planned leader changes while clients pay, and not one
client request fails or is left with an unknown outcome -- they are only told to retry. The
nodes log in JSON, and `quorapay logs` tells each change: who handed over, who took over, and
how long it took in seconds."""

from __future__ import annotations

import json
import os
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
from tests.integration.helpers import local_cluster_file

pytestmark = pytest.mark.integration
QUORAPAY = [sys.executable, "-m", "quorapay"]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path, name="switchover", log_format="json")
    trio.run(supervisor.up, cluster)
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def quorapay(cluster: ClusterConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QUORAPAY, "-c", str(cluster.path), *args], capture_output=True,
                          text=True, timeout=120)


def test_ten_switchovers_under_load_fail_no_client_request(local: ClusterConfig,
                                                            tmp_path: Path) -> None:
    record = tmp_path / "told.jsonl"
    workload = subprocess.Popen([*QUORAPAY, "-c", str(local.path), "workload", "--transfers",
                                 "1000000", "--clients", "4", "--record", str(record), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while lines(record) < 200:  # the workload is under way
            assert workload.poll() is None, workload.communicate()
            assert time.monotonic() < deadline, "the workload never got going"
            time.sleep(0.1)
        nodes = [n.id for n in local.nodes]
        reports = []
        for round_ in range(10):
            asked = [] if round_ % 2 == 0 else ["--to", _not_leading(local, nodes)]
            told_before = lines(record)
            done = quorapay(local, "switchover", "--json", *asked)
            assert done.returncode == 0, done.stdout + done.stderr
            report = json.loads(done.stdout)
            assert report["new_leader"] == report["target"] != report["old_leader"]
            assert report["new_epoch"] == report["old_epoch"] + 1
            if asked:
                assert report["target"] == asked[1]
            reports.append(report)
            deadline = time.monotonic() + 60
            while lines(record) < told_before + 100:  # the new leader serves the clients
                assert workload.poll() is None, workload.communicate()
                assert time.monotonic() < deadline, "no progress after a switchover"
                time.sleep(0.05)
    finally:
        os.killpg(workload.pid, signal.SIGINT)
        out, err = workload.communicate(timeout=60)
    assert workload.returncode == 130, err
    summary = json.loads(out)
    assert set(summary["outcomes"]) == {"ok"}, summary  # every request answered, and applied
    assert set(summary["retries"]) <= {"NOT_LEADER", "UNAVAILABLE"}, summary["retries"]
    assert summary["retries"], "the clients never met a switchover"
    assert len({r["old_leader"] for r in reports} | {r["new_leader"] for r in reports}) >= 2
    verified = quorapay(local, "verify", "--acknowledged", str(record))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    _every_change_is_in_the_logs(local, reports)


def _every_change_is_in_the_logs(cluster: ClusterConfig, reports: list[dict[str, Any]]) -> None:
    shown = quorapay(cluster, "logs", "--json", "--level", "INFO")
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    roles = [r for r in records if r.get("fields", {}).get("event") == "role"]
    for report in reports:
        epoch = report["new_epoch"]
        [ended] = [r for r in roles if r["node"] == report["old_leader"]
                   and r["fields"]["epoch"] == report["old_epoch"] and "led_seconds" in r["fields"]]
        assert ended["level"] == "INFO"  # planned: no warning
        assert ended["fields"]["cause"] == f"handed over to {report['target']} (switchover)"
        [took] = [r for r in roles if r["node"] == report["new_leader"]
                  and r["fields"] == {**r["fields"], "role": "leader", "epoch": epoch}]
        assert 0 <= took["fields"]["takeover_seconds"] < report["seconds"] + 1
        assert f"leader of epoch {epoch}, serving: took over" in took["message"]
        [candidate] = [r for r in roles if r["node"] == report["new_leader"]
                       and r["fields"]["role"] == "candidate" and r["fields"]["epoch"] == epoch]
        assert "handed leadership to this node" in candidate["fields"]["cause"]


def _not_leading(cluster: ClusterConfig, nodes: list[str]) -> str:
    leader = supervisor.current_leader(trio.run(supervisor.statuses, cluster))
    assert leader is not None
    return next(n for n in reversed(nodes) if n != leader.node)
