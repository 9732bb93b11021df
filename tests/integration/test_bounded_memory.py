"""A growing ledger on real processes: a node's memory is bounded by its cluster file (the page
cache it reads stored transfers through, the commands its log may hold), not by the transfers
it has stored; a restarted follower serves again, and every acknowledged transfer is found."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from quorapay.bench.scale import run_scale
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from tests.integration.conftest import _stopped_after, write_cluster

pytestmark = pytest.mark.integration
SMALL, LARGE = 30_000, 200_000
# What a node may grow by from SMALL to LARGE stored transfers: the page cache (4 MB), the log
# (at most 20 000 commands), batches in flight, allocator slack. Before transfers moved to disk
# each one cost about 0.45 KB on every node: 76 MB here.
GROWTH_MB = 40


@pytest.fixture
def bounded(zk_port: int, tmp_path: Path) -> Iterator[ClusterConfig]:
    yield from _stopped_after(write_cluster(
        tmp_path / "cluster.toml", name=f"it-{uuid.uuid4().hex[:10]}", zk_port=zk_port,
        storage={"cache_mb": 4, "max_log_commands": 20_000, "compact_retain": 50}))


def test_memory_stays_within_the_configured_bound_as_the_ledger_grows(
        bounded: ClusterConfig) -> None:
    trio.run(supervisor.up, bounded)
    report = trio.run(partial(run_scale, bounded, [SMALL, LARGE], seconds=1.0,
                              rebuild_nodes=False, timeout=300))
    small, large = report.levels
    assert report.valid, (report.check, [level.problems for level in report.levels])
    assert large.transfers >= LARGE
    nodes = [str(node.id) for node in bounded.nodes]
    grown = {node: large.rss_mb[node] - small.rss_mb[node] for node in nodes}
    print(f"\nRSS MB at {small.transfers}: {small.rss_mb}; at {large.transfers}: {large.rss_mb}")
    assert max(grown.values()) < GROWTH_MB, (small.rss_mb, large.rss_mb)
    assert small.restart_seconds is not None and large.restart_seconds is not None
