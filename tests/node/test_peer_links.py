"""Peer links: only the nodes of the cluster get in, each only as itself; a garbage frame closes
that link only; a second connection cannot take a live link over."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

from quorapay.config import ClusterConfig
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import PROTOCOL_VERSION, Frame, Hello, Prepare, encode
from quorapay.core.types import Epoch, NodeId
from quorapay.node.peers import PeerLinks
from quorapay.security.tls import credential_context, node_client_context, node_server_context
from quorapay.transport.dial import DialedLink, TlsRefused, dial
from tests.secured import secured_cluster


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return secured_cluster(tmp_path / "ours", nodes=3)


def hello(node: str, cluster: str) -> bytes:
    return encode(Hello(version=PROTOCOL_VERSION, cluster=cluster, node=NodeId(node)))


def frame(epoch: int) -> bytes:
    stamp = Timestamp(1_800_000_000_000, 7)
    return encode(Frame(version=PROTOCOL_VERSION, messages=(Prepare(epoch=Epoch(epoch)),),
                        hlc=stamp, wall_ms=stamp.wall_ms))


@asynccontextmanager
async def node_n2(config: ClusterConfig
                  ) -> AsyncIterator[tuple[trio.Nursery, PeerLinks, trio.MemoryReceiveChannel]]:
    """n2's peer links, listening; yields (nursery, links, what they deliver to the driver)."""
    n2 = config.node("n2")
    inputs_send, inputs = trio.open_memory_channel(10)
    links = PeerLinks(config, n2, inputs_send,
                      server_tls=node_server_context(config, "n2", clients=False),
                      dial_tls=node_client_context(config, "n2"))
    listeners = await trio.open_tcp_listeners(n2.peer_port, host="127.0.0.1")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(links.serve, listeners)
            yield nursery, links, inputs
            nursery.cancel_scope.cancel()


async def as_node(nursery: trio.Nursery, config: ClusterConfig, tls: ssl.SSLContext
                  ) -> DialedLink:
    return await dial(nursery, config.node("n2").peer_address, tls=tls, cluster=config.name,
                      timeout=5, max_message_size=2**20)


async def test_a_garbage_frame_closes_the_link_and_the_node_keeps_serving(
        config: ClusterConfig) -> None:
    async with node_n2(config) as (nursery, _, inputs):
        tls = node_client_context(config, "n1")
        link = await as_node(nursery, config, tls)  # n1, with n1's certificate
        await link.ws.send_message(hello("n1", config.name))
        await link.ws.get_message()  # n2's hello
        await link.ws.send_message(b"\x93garbage")
        with pytest.raises(ConnectionClosed) as closed:
            await link.ws.get_message()
        assert closed.value.reason.code == 1002
        await link.aclose()
        link = await as_node(nursery, config, tls)
        await link.ws.send_message(hello("n1", config.name))
        await link.ws.get_message()
        await link.ws.send_message(frame(3))
        delivered = await inputs.receive()
        assert delivered.sender == "n1" and delivered.message == Prepare(epoch=Epoch(3))
        assert isinstance(delivered, MessageReceived)
        await link.aclose()


async def test_a_node_may_not_say_it_is_another(config: ClusterConfig) -> None:
    async with node_n2(config) as (nursery, links, _):
        link = await as_node(nursery, config, node_client_context(config, "n3"))
        await link.ws.send_message(hello("n1", config.name))  # n3's certificate, n1's name
        with pytest.raises(ConnectionClosed) as closed:
            await link.ws.get_message()
        assert closed.value.reason.code == 1008
        await link.aclose()
        assert links.connected == []


async def test_a_client_credential_is_refused_on_the_peer_port(config: ClusterConfig) -> None:
    async with node_n2(config) as (nursery, links, _):
        with pytest.raises(ConnectionRejected) as rejected:
            await as_node(nursery, config, credential_context(config, "operator"))
        assert rejected.value.status_code == 403
        assert links.connected == []


async def test_no_certificate_or_another_clusters_gets_no_further_than_tls(
        config: ClusterConfig, tmp_path: Path) -> None:
    theirs = secured_cluster(tmp_path / "theirs", nodes=3)  # same names, another CA
    bare = ssl.create_default_context(cafile=str(config.security.secrets_dir / "ca.pem"))
    bare.check_hostname = False
    async with node_n2(config) as (nursery, links, _):
        with pytest.raises(TlsRefused):  # theirs does not even trust our node
            await as_node(nursery, config, node_client_context(theirs, "n1"))
        with pytest.raises(HandshakeError):  # ours is refused: no certificate (the alert that
            await as_node(nursery, config, bare)  # says so may be lost with the connection)
        assert links.connected == []


async def test_a_hello_from_another_cluster_is_refused(config: ClusterConfig) -> None:
    async with node_n2(config) as (nursery, links, _):
        link = await as_node(nursery, config, node_client_context(config, "n1"))
        await link.ws.send_message(hello("n1", "some-other-cluster"))
        with pytest.raises(ConnectionClosed):
            await link.ws.get_message()
        await link.aclose()
        assert links.connected == []


async def test_a_second_connection_cannot_take_over_a_live_link(config: ClusterConfig) -> None:
    async with node_n2(config) as (nursery, links, inputs):
        tls = node_client_context(config, "n1")
        first = await as_node(nursery, config, tls)
        await first.ws.send_message(hello("n1", config.name))
        await first.ws.get_message()
        await first.ws.send_message(frame(1))
        await inputs.receive()
        second = await as_node(nursery, config, tls)  # the same node again, at once
        await second.ws.send_message(hello("n1", config.name))
        await second.ws.get_message()
        with pytest.raises(ConnectionClosed) as closed:
            await second.ws.get_message()
        assert closed.value.reason.reason == "already linked"
        await first.ws.send_message(frame(2))  # the first link still delivers
        assert (await inputs.receive()).message == Prepare(epoch=Epoch(2))
        assert links.connected == ["n1"]
        await second.aclose()
        await first.aclose()
