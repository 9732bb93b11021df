"""Ctrl-C, as a terminal sends it (SIGINT to the process group), on the long commands: each stops
with exit code 130 and one line saying what it kept -- a workload's streamed record, a bank
check's checked partial history, the seeds a simulation finished -- and leaves no fault behind."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from tests.integration.helpers import local_cluster_file

pytestmark = pytest.mark.integration
QUORAPAY = [sys.executable, "-m", "quorapay"]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path, name="interrupted")
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


def interrupt_when(command: list[str], ready: Callable[[], bool], *, cwd: Path,
                   timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """Start `command` in a session of its own; once `ready()`, send SIGINT to its group."""
    process = subprocess.Popen(command, cwd=cwd, start_new_session=True, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "never ready to be interrupted"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_an_interrupted_workload_keeps_every_outcome_it_was_told(
        local: ClusterConfig, tmp_path: Path) -> None:
    trio.run(supervisor.up, local)
    record = tmp_path / "told.jsonl"
    done = interrupt_when([*QUORAPAY, "-c", str(local.path), "workload", "--transfers", "100000",
                           "--clients", "4", "--record", str(record)],
                          lambda: lines(record) >= 100, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert re.search(r"interrupted after \d+ of 100000 transfers; their outcomes are in",
                     done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    told = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(told) >= 100 and {t["status"] for t in told} <= {"ok", "unknown"}
    verified = subprocess.run([*QUORAPAY, "-c", str(local.path), "verify", "--acknowledged",
                               str(record)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_interrupted_bank_check_heals_and_checks_what_happened(
        local: ClusterConfig, tmp_path: Path) -> None:
    trio.run(supervisor.up, local)
    results = tmp_path / "bank"
    history = results / "history.jsonl"
    done = interrupt_when([*QUORAPAY, "-c", str(local.path), "check", "bank", "--time", "120",
                           "--nemesis", "partition,pause", "--results", str(results)],
                          lambda: lines(history) >= 300, cwd=tmp_path)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "interrupted: the history so far was checked" in done.stderr
    assert str(results) in done.stderr and "Traceback" not in done.stderr
    assert "liveness: not measured (the run was interrupted)" in done.stdout
    report = json.loads((results / "report.json").read_text())
    assert report["verdict"] in ("valid", "inconclusive"), report
    faults = subprocess.run([*QUORAPAY, "-c", str(local.path), "chaos", "status"],
                            capture_output=True, text=True, timeout=60)
    assert "no faults in effect" in faults.stdout, faults.stdout


def test_an_interrupted_simulation_reports_the_seeds_it_finished(tmp_path: Path) -> None:
    """Under a pseudo-terminal, as a person runs it: the progress shows, Ctrl-C stops it."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([*QUORAPAY, "sim", "--seeds", "300", "--workers", "2"],
                               stdin=terminal, stdout=terminal, stderr=terminal,
                               start_new_session=True, cwd=tmp_path)
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120
    while not re.search(rb"\b([3-9]|\d\d+)/300\b", shown):  # progress: a few seeds done
        assert time.monotonic() < deadline and process.poll() is None, shown[-2000:]
        if select.select([controller], [], [], 0.5)[0]:
            shown += os.read(controller, 65536)
    os.killpg(process.pid, signal.SIGINT)
    while process.poll() is None or select.select([controller], [], [], 0.2)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=60)
    os.close(controller)
    text = shown.decode(errors="replace")
    assert process.returncode == 130, text[-2000:]
    finished = re.search(r"interrupted after (\d+) of 300 seed\(s\) \(seeds 1\.\.(\d+) finished",
                         text)
    assert finished is not None, text[-2000:]
    assert int(finished.group(1)) == int(finished.group(2)) >= 3
    assert "Traceback" not in text
