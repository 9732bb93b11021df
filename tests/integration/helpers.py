"""Small helpers for integration tests: waiting with deadlines, killing by pid."""

from __future__ import annotations

import signal

import trio

from quorapay.api import schema as api
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.verify.checks import Acknowledged, Report, check
from quorapay.verify.collect import collect


async def leader(cluster: ClusterConfig) -> api.NodeStatus:
    with trio.fail_after(30):
        while True:
            found = supervisor.current_leader(await supervisor.statuses(cluster))
            if found is not None:
                return found
            await trio.sleep(0.1)


def kill(cluster: ClusterConfig, node_id: str) -> None:
    pid = supervisor.node_process(cluster, cluster.node(node_id)).signal(signal.SIGKILL)
    assert pid is not None, f"{node_id} was not running"


async def verified(cluster: ClusterConfig, acknowledged: list[Acknowledged] = ()) -> Report:
    return check(await collect(cluster, settle=20, acknowledged=list(acknowledged)))
