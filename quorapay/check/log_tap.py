"""Read every node's committed log while a bank run goes on, before compaction forgets it.

The bank checker replays the whole committed log from index 1, but nodes compact: after
`compact_every` entries their oldest ones are gone. The tap polls each node (one task per node,
so a paused or cut-off node delays only itself), reads its applied entries since the last poll,
and keeps them by index. A node that installed a snapshot or compacted past what the tap had read
has a gap in its entries; the checker uses any node's entry at each index (committed entries are
the same everywhere, which it also checks) and answers UNKNOWN only if no node's entry was read.
"""

from __future__ import annotations

import contextlib

import trio

from quorapay.api import schema as api
from quorapay.client import ClientError
from quorapay.config import ClusterConfig
from quorapay.core.types import LogEntry, NodeId
from quorapay.security.access import ask_node

POLL_SECONDS = 0.5
REQUEST_TIMEOUT = 2.0


class LogTap:
    def __init__(self, cluster: ClusterConfig) -> None:
        self._cluster = cluster
        self._nodes = {n.id: n for n in cluster.nodes}
        self.logs: dict[str, list[LogEntry]] = {n: [] for n in self._nodes}
        self.skipped: dict[str, list[tuple[int, int]]] = {n: [] for n in self._nodes}
        self._next: dict[str, int] = dict.fromkeys(self._nodes, 1)

    async def run(self) -> None:
        """Poll every node until cancelled."""
        async with trio.open_nursery() as nursery:
            for node in self._nodes:
                nursery.start_soon(self._follow, node)

    async def _follow(self, node: str) -> None:
        while True:
            with contextlib.suppress(ClientError):  # down, paused, cut off: next poll
                await self.read(node, timeout=REQUEST_TIMEOUT)
            await trio.sleep(POLL_SECONDS)

    async def read(self, node: str, *, timeout: float) -> None:
        """Read `node`'s applied entries that the tap has not read yet."""
        target = self._nodes[NodeId(node)]
        status = (await ask_node(self._cluster, target, api.Status(), timeout=timeout)).status
        assert status is not None
        if self._next[node] <= status.log_start:  # compacted before we read it
            self.skipped[node].append((self._next[node], status.log_start))
            self._next[node] = status.log_start + 1
        while self._next[node] <= status.applied_index:
            first = self._next[node]
            last = min(first + api.MAX_BATCH - 1, status.applied_index)
            response = await ask_node(self._cluster, target, api.Entries(first=first, last=last),
                                      timeout=timeout)
            entries = response.entries or []
            if not entries:
                return
            self.logs[node] += entries
            self._next[node] = entries[-1].index + 1
