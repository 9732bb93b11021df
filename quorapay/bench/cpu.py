"""CPU time of the cluster's processes, read from /proc (user + system, every thread)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from quorapay.cluster import runtime, supervisor
from quorapay.config import ClusterConfig

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuSample:
    seconds: dict[str, float]  # process name (a node id, "proxy") -> CPU seconds so far


def cluster_pids(cluster: ClusterConfig) -> dict[str, int]:
    """The running processes this machine's supervisor started for the cluster, by name."""
    pids: dict[str, int | None] = {
        str(node.id): supervisor.node_process(cluster, node).pid() for node in cluster.nodes}
    if runtime.proxied(cluster):
        pids["proxy"] = supervisor.proxy_process(cluster).pid()
    return {name: pid for name, pid in pids.items() if pid is not None}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def sample(pids: Mapping[str, int]) -> CpuSample:
    found = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return CpuSample(seconds={name: s for name, s in found.items() if s is not None})


def used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds each process used between two samples (those alive at both)."""
    return {name: round(after.seconds[name] - start, 3)
            for name, start in before.seconds.items() if name in after.seconds}
