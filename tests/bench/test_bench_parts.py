"""The benchmark's parts that need no cluster: points, CPU from /proc, the plot."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from quorapay.bench import cpu
from quorapay.bench.acknowledged import AckCheck
from quorapay.bench.load import BenchError, LoadReport, PointResult, parse_points
from quorapay.bench.plot import plot_load
from quorapay.bench.points import Point


def test_points_are_clients_or_clients_times_batch() -> None:
    assert parse_points("1, 16,64,16x100") == [
        Point(clients=1, batch=1), Point(clients=16, batch=1), Point(clients=64, batch=1),
        Point(clients=16, batch=100)]


@pytest.mark.parametrize("text", ["", "x", "0", "1x0", "257", "4x1001", "a,b", "2x3x4"])
def test_bad_points_are_one_clear_error(text: str) -> None:
    with pytest.raises(BenchError):
        parse_points(text)


def test_cpu_time_is_read_from_proc_for_live_processes_only() -> None:
    before = cpu.sample({"me": os.getpid(), "gone": 2**22 + 1})
    sum(i * i for i in range(300_000))  # burn a little CPU
    after = cpu.sample({"me": os.getpid()})
    assert set(before.seconds) == {"me"}
    assert cpu.used(before, after)["me"] >= 0


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    point = PointResult(clients=1, batch=1, transfers_per_s=200.0, p50_ms=4.0, p90_ms=5.0,
                        p99_ms=7.0, p999_ms=9.0, max_ms=10.0, requests=2000, failed=0,
                        acknowledged=2000, cpu_seconds={}, cpu_cores=None,
                        cpu_ms_per_transfer=None)
    batched = dataclasses.replace(point, batch=100, transfers_per_s=20000.0)
    report = LoadReport(cluster="c", nodes=3, proxies=False, tls=True, cores=2, seconds=1.0,
                        warm_up=0.0, points=[point, batched],
                        check=AckCheck(acknowledged=1, found=1, missing=0, different=0))
    plot_load(report, tmp_path / "sub" / "p.png")
    assert (tmp_path / "sub" / "p.png").read_bytes().startswith(b"\x89PNG")
