"""Gather what `checks` needs from every node of a running cluster: the verifier's only I/O."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import trio

from quorapay.api import schema as api
from quorapay.client import ClientError
from quorapay.cluster.supervisor import statuses
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import QuorapayError
from quorapay.security.access import ask_node
from quorapay.verify.checks import Acknowledged, Evidence

PAGE = 5000


class VerifyError(QuorapayError):
    """The verifier's own input is unusable (e.g. a malformed record file)."""


def load_acknowledged(path: Path) -> list[Acknowledged]:
    acknowledged = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                acknowledged.append(msgspec.json.decode(line, type=Acknowledged))
            except msgspec.DecodeError as exc:
                raise VerifyError(f"{path}:{number}: not a transfer record: {exc}") from None
    return acknowledged


async def collect(cluster: ClusterConfig, *, settle: float,
                  acknowledged: list[Acknowledged], deep: bool = False) -> Evidence:
    found = await settled_statuses(cluster, settle)
    reachable = {n: s for n, s in found.items() if isinstance(s, api.NodeStatus)}
    unreachable = {n: s for n, s in found.items() if isinstance(s, str)}
    common = min((s.applied_index for s in reachable.values()), default=0)
    for node_id, status in list(reachable.items()):
        if status.log_start > common:  # it has no log to compare at the common index
            unreachable[node_id] = (f"its log is compacted up to {status.log_start}, past the "
                                    f"common index {common}; verify again once nodes converge")
            del reachable[node_id]
    after = max((s.log_start for s in reachable.values()), default=0)
    evidence = Evidence(statuses=reachable, unreachable=unreachable, common_index=common,
                        log_after=after, at_common={}, at_applied={}, acknowledged=acknowledged,
                        deep=deep)
    for node_id in reachable:
        node = cluster.node(node_id)
        try:
            evidence.at_common[node_id] = await _digest(cluster, node, common, after)
            evidence.at_applied[node_id] = await _digest(cluster, node, None, None, deep=deep)
            if acknowledged:
                evidence.found[node_id] = await _local_transfers(cluster, node, acknowledged)
        except ClientError as exc:
            evidence.unreachable[node_id] = str(exc)
            evidence.at_common.pop(node_id, None)
            evidence.at_applied.pop(node_id, None)
    if len({d.log_digest for d in evidence.at_common.values()}) > 1:
        for node_id in evidence.at_common:
            evidence.entry_digests[node_id] = await _entry_digests(
                cluster, cluster.node(node_id), after, common)
    return evidence


async def settled_statuses(cluster: ClusterConfig, settle: float
                            ) -> dict[str, api.NodeStatus | str]:
    """Statuses once every reachable node has applied the same index (or `settle` passed)."""
    deadline = time.monotonic() + settle
    while True:
        found = await statuses(cluster)
        applied = {s.applied_index for s in found.values() if isinstance(s, api.NodeStatus)}
        commits = {s.commit_index for s in found.values() if isinstance(s, api.NodeStatus)}
        all_up = all(isinstance(s, api.NodeStatus) for s in found.values())
        if (len(applied) <= 1 and applied == commits and all_up) or time.monotonic() > deadline:
            return found
        await trio.sleep(0.2)


async def _digest(cluster: ClusterConfig, node: NodeConfig, upto: int | None,
                  after: int | None, *, deep: bool = False) -> api.DigestInfo:
    response = await ask_node(cluster, node, api.Digest(upto=upto, after=after, deep=deep),
                              timeout=30.0)
    assert response.digest is not None
    return response.digest


async def _entry_digests(cluster: ClusterConfig, node: NodeConfig, after: int, upto: int
                         ) -> list[str]:
    digests: list[str] = []
    for first in range(after + 1, upto + 1, PAGE):
        response = await ask_node(cluster, node, api.EntryDigests(
            first=first, last=min(first + PAGE - 1, upto)), timeout=30.0)
        digests.extend(response.entry_digests or [])
    return digests


async def _local_transfers(cluster: ClusterConfig, node: NodeConfig,
                           acknowledged: list[Acknowledged]) -> dict[str, api.TransferRecord]:
    found: dict[str, api.TransferRecord] = {}
    ids = [a.id for a in acknowledged]
    for start in range(0, len(ids), api.MAX_BATCH):
        response = await ask_node(cluster, node, api.LocalTransfers(
            ids=ids[start:start + api.MAX_BATCH]), timeout=30.0)
        found.update((t.id, t) for t in response.transfers or [])
    return found
