"""Peer links: a garbage frame closes that link only; the node keeps accepting and delivering."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed

from quorapay.cluster.ports import free_ports
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import PROTOCOL_VERSION, Frame, Hello, Prepare, encode
from quorapay.core.types import Epoch, NodeId
from quorapay.node.peers import PeerLinks
from quorapay.websocket import ClientWebsocket, connect


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    document = default_cluster(nodes=2)
    for node in document["nodes"]:
        node["peer_port"], node["client_port"] = free_port(), free_port()
    (tmp_path / "cluster.toml").write_text(render(document))
    return load_config(tmp_path / "cluster.toml")


async def dial(nursery: trio.Nursery, url: str) -> ClientWebsocket:
    return await connect(nursery, url, timeout=5, max_message_size=2**20)


def hello(node: str, cluster: str) -> bytes:
    return encode(Hello(version=PROTOCOL_VERSION, cluster=cluster, node=NodeId(node)))


async def test_garbage_frame_closes_the_link_and_the_node_keeps_serving(
        config: ClusterConfig) -> None:
    n2 = config.node("n2")
    inputs_send, inputs = trio.open_memory_channel(10)
    links = PeerLinks(config, n2, inputs_send)
    listeners = await trio.open_tcp_listeners(n2.peer_port, host="127.0.0.1")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(links.serve, listeners)
            link = await dial(nursery, n2.peer_url)  # pretends to be n1
            await link.ws.send_message(hello("n1", config.name))
            await link.ws.get_message()  # n2's hello
            await link.ws.send_message(b"\x93garbage")
            with pytest.raises(ConnectionClosed) as closed:
                await link.ws.get_message()
            assert closed.value.reason.code == 1002
            await link.aclose()
            link = await dial(nursery, n2.peer_url)
            await link.ws.send_message(hello("n1", config.name))
            await link.ws.get_message()
            prepare = Prepare(epoch=Epoch(3))
            stamp = Timestamp(1_800_000_000_000, 7)
            await link.ws.send_message(encode(Frame(version=PROTOCOL_VERSION,
                                                    messages=(prepare,), hlc=stamp,
                                                    wall_ms=stamp.wall_ms)))
            delivered = await inputs.receive()
            assert delivered == MessageReceived(sender=NodeId("n1"), message=prepare, hlc=stamp,
                                                wall_ms=stamp.wall_ms)
            await link.aclose()
            nursery.cancel_scope.cancel()


async def test_hello_from_another_cluster_is_refused(config: ClusterConfig) -> None:
    n2 = config.node("n2")
    inputs_send, _ = trio.open_memory_channel(10)
    links = PeerLinks(config, n2, inputs_send)
    listeners = await trio.open_tcp_listeners(n2.peer_port, host="127.0.0.1")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(links.serve, listeners)
            link = await dial(nursery, n2.peer_url)
            await link.ws.send_message(hello("n1", "some-other-cluster"))
            with pytest.raises(ConnectionClosed):
                await link.ws.get_message()
            await link.aclose()
            assert links.connected == []
            nursery.cancel_scope.cancel()
