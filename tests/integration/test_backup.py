"""Backups taken under load, restored into another node, and a rebuilt node: on real processes,
each node catches up from the leader and `verify` passes with every acknowledged transfer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.verify.checks import Verdict
from quorapay.verify.collect import load_acknowledged
from tests.integration.helpers import kill, leader, local_cluster_file, verified
from tests.integration.test_cli_json import check as documented

pytestmark = pytest.mark.integration
QUORAPAY = [sys.executable, "-m", "quorapay"]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path, name="backups")
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


def quorapay(cluster: ClusterConfig, *args: str, code: int = 0) -> str:
    done = subprocess.run([*QUORAPAY, "-c", str(cluster.path), *args], capture_output=True,
                          text=True, timeout=300, cwd=cluster.path.parent)
    assert done.returncode == code, f"{args}: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout if code == 0 else done.stderr


def applied(cluster: ClusterConfig, node: str) -> int:
    status = trio.run(supervisor.statuses, cluster)[node]
    return 0 if isinstance(status, str) else status.applied_index


def test_a_backup_taken_under_load_seeds_another_node_and_a_rebuilt_one_catches_up(
        local: ClusterConfig, tmp_path: Path) -> None:
    trio.run(supervisor.up, local)
    first = trio.run(leader, local)
    follower, other = [n.id for n in local.nodes if n.id != first.node]
    record, backup = tmp_path / "acked.jsonl", tmp_path / "backup #1?.db"  # URI characters
    load = subprocess.Popen([*QUORAPAY, "-c", str(local.path), "workload", "--transfers", "3000",
                             "--clients", "4", "--batch", "5", "--record", str(record)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while applied(local, follower) < 100:  # under load: transfers are being applied
            assert load.poll() is None and time.monotonic() < deadline, load.communicate()
            time.sleep(0.1)
        taken = json.loads(quorapay(local, "backup", follower, str(backup), "--json"))
        documented("backup", taken)
        assert taken["node"] == follower and taken["applied_index"] >= 100
        assert taken["transfers"] > 0 and backup.stat().st_mode & 0o077 == 0
        assert load.poll() is None, "the backup should have been taken while the load ran"
    finally:
        out, err = load.communicate(timeout=240)
    assert load.returncode == 0, out + err

    # Bad input changes nothing: a running node, a file that is no backup, an existing file.
    assert "is running" in quorapay(local, "restore", other, str(backup), code=1)
    assert "exists" in quorapay(local, "backup", follower, str(backup), code=1)
    kill(local, other)
    assert "not answering" in quorapay(local, "node", "rebuild", first.node, code=1)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert "is not a Quorapay node database" in quorapay(local, "restore", other, str(garbage),
                                                         code=1)

    restored = json.loads(quorapay(local, "restore", other, str(backup), "--json"))
    documented("restore", restored)
    assert restored["backup"]["node"] == follower and restored["previous"]
    assert restored["promised_epoch"] >= first.epoch  # refuses any deposed leader
    trio.run(supervisor.up, local)
    acknowledged = load_acknowledged(record)
    report = trio.run(verified, local, acknowledged)
    assert report.verdict is Verdict.VALID, report.findings

    rebuilt = json.loads(quorapay(local, "node", "rebuild", first.node, "--json"))
    documented("node rebuild", rebuilt)
    assert rebuilt["node"] == first.node and rebuilt["caught_up_index"] >= taken["applied_index"]
    report = trio.run(verified, local, acknowledged)
    assert report.verdict is Verdict.VALID, report.findings
    deep = json.loads(quorapay(local, "verify", "--deep", "--json"))
    assert deep["verdict"] == "valid"
