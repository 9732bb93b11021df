"""Clients of a cluster, as its own tools make them: the URLs from the cluster file and a
credential from its secrets dir (the operator's unless told otherwise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quorapay.api import schema as api
from quorapay.client import Client, node_request
from quorapay.config import ClusterConfig, NodeConfig
from quorapay.security.secrets import OPERATOR
from quorapay.security.tls import client_tls


def cluster_client(cluster: ClusterConfig, *, credential: str = OPERATOR,
                   nodes: Sequence[NodeConfig] | None = None, **options: Any) -> Client:
    """A Client of `nodes` (default: every node) holding `credential`."""
    urls = [cluster.client_url(node) for node in (nodes or cluster.nodes)]
    return Client(urls, tls=client_tls(cluster, credential), **options)


async def ask_node(cluster: ClusterConfig, node: NodeConfig, request: api.Request, *,
                   timeout: float = 3.0, credential: str = OPERATOR) -> api.Response:
    """Ask one node, once (status, digests, entries); ClientError if it cannot answer."""
    return await node_request(cluster.client_url(node), request,
                              tls=client_tls(cluster, credential), timeout=timeout)
