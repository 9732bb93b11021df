"""The transport seam: who may connect, and how many, for how long. Real TLS over loopback."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

from quorapay.config import ClusterConfig
from quorapay.security.identity import Principal, Role
from quorapay.security.tls import credential_context, node_client_context, node_server_context
from quorapay.transport.address import Address
from quorapay.transport.dial import TlsRefused, dial
from quorapay.transport.limits import Limits
from quorapay.transport.server import Link, Refusal, WebsocketServer
from tests.secured import secured_cluster

FAST = Limits(max_connections=8, max_per_source=8, max_unauthenticated=4,
              handshake_timeout=0.5, idle_timeout=0.6)


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterConfig:
    return secured_cluster(tmp_path / "ours", name="ours")


@pytest.fixture
def other(tmp_path: Path) -> ClusterConfig:
    return secured_cluster(tmp_path / "theirs", name="theirs")


def clients_only(principal: Principal | None) -> Refusal | None:
    if principal is None:
        return Refusal(401, "a client certificate is required")
    if principal.role is Role.NODE:
        return Refusal(403, "not for nodes")
    return None


class Echo:
    """A server whose handler echoes messages and records who connected."""

    def __init__(self, cluster: ClusterConfig, limits: Limits = FAST) -> None:
        self.seen: list[Principal | None] = []
        self.server = WebsocketServer(self.handle, what="test", cluster=cluster.name,
                                      tls=node_server_context(cluster, "n1", clients=True),
                                      authorize=clients_only, limits=limits,
                                      max_message_size=2**16)

    async def handle(self, link: Link) -> None:
        self.seen.append(link.principal)
        while True:
            try:
                await link.send(await link.receive())
            except ConnectionClosed:
                return

    async def start(self, nursery: trio.Nursery) -> Address:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        await nursery.start(self.server.serve, listeners)
        return Address("127.0.0.1", listeners[0].socket.getsockname()[1])


async def echo_once(address: Address, tls: ssl.SSLContext | None, cluster: str = "ours") -> str:
    """One round trip; the dial's own exception, not a group, if it fails."""
    failure: Exception | None = None
    answer: str | bytes = ""
    async with trio.open_nursery() as nursery:
        try:
            link = await dial(nursery, address, tls=tls, cluster=cluster, timeout=5,
                              max_message_size=2**16)
        except Exception as exc:
            failure = exc
        else:
            try:
                await link.ws.send_message("ping")
                answer = await link.ws.get_message()
            finally:
                await link.aclose()
    if failure is not None:
        raise failure
    assert isinstance(answer, str)
    return answer


async def test_a_client_with_a_credential_of_the_cluster_is_served_as_itself(
        cluster: ClusterConfig) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            assert await echo_once(address, credential_context(cluster, "payer")) == "ping"
            assert echo.seen == [Principal(cluster="ours", role=Role.PAYER, name="payer")]
            nursery.cancel_scope.cancel()


async def test_the_node_proves_which_node_it_is_to_whoever_dials_it(cluster: ClusterConfig
                                                                     ) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            link = await dial(nursery, address, tls=credential_context(cluster, "operator"),
                              cluster="ours", timeout=5, max_message_size=2**16)
            assert link.principal == Principal(cluster="ours", role=Role.NODE, name="n1")
            await link.aclose()
            nursery.cancel_scope.cancel()


async def test_no_certificate_gets_401_with_a_reason(cluster: ClusterConfig) -> None:
    bare = ssl.create_default_context(cafile=str(cluster.security.secrets_dir / "ca.pem"))
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            with pytest.raises(ConnectionRejected) as rejected:
                await echo_once(address, bare)
            assert rejected.value.status_code == 401
            assert b"client certificate" in (rejected.value.body or b"")
            assert echo.seen == []
            nursery.cancel_scope.cancel()


async def test_a_node_certificate_on_the_client_port_gets_403(cluster: ClusterConfig) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            with pytest.raises(ConnectionRejected) as rejected:
                await echo_once(address, node_client_context(cluster, "n2"))
            assert rejected.value.status_code == 403
            nursery.cancel_scope.cancel()


async def test_a_certificate_of_another_cluster_is_refused_in_tls(
        cluster: ClusterConfig, other: ClusterConfig) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            # their client does not trust our node's certificate ...
            with pytest.raises(TlsRefused, match="CERTIFICATE_VERIFY_FAILED"):
                await echo_once(address, credential_context(other, "payer"), "theirs")
            # ... and with our CA trusted, our node refuses their certificate (its alert is
            # lost with the connection: trio does not send it on a failed server handshake)
            mixed = credential_context(other, "payer")
            mixed.load_verify_locations(cafile=str(cluster.security.secrets_dir / "ca.pem"))
            with pytest.raises(HandshakeError):
                await echo_once(address, mixed)
            assert echo.seen == []
            nursery.cancel_scope.cancel()


async def silent_connection(address: Address) -> trio.SocketStream:
    return await trio.open_tcp_stream(address.host, address.port)


async def test_a_connection_that_never_finishes_its_handshake_is_dropped(
        cluster: ClusterConfig) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            stream = await silent_connection(address)
            with trio.fail_after(FAST.handshake_timeout + 2):
                assert await stream.receive_some(100) == b""  # closed by the node
            await stream.aclose()
            assert echo.server.admission.timed_out == 1
            assert echo.server.admission.open == 0
            nursery.cancel_scope.cancel()


async def test_a_flood_of_half_open_connections_does_not_keep_a_client_out(
        cluster: ClusterConfig) -> None:
    echo = Echo(cluster, Limits(max_connections=64, max_per_source=64, max_unauthenticated=4,
                                handshake_timeout=30, idle_timeout=30))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            flood = [await silent_connection(address) for _ in range(40)]
            for _ in range(3):
                assert await echo_once(address, credential_context(cluster, "payer")) == "ping"
            admission = echo.server.admission
            assert admission.evicted >= 36 and admission.unauthenticated <= 4
            for stream in flood:
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_full_listener_refuses_at_once_and_serves_again_when_a_slot_frees(
        cluster: ClusterConfig) -> None:
    echo = Echo(cluster, Limits(max_connections=2, max_per_source=2, max_unauthenticated=2,
                                handshake_timeout=5, idle_timeout=30))
    tls = credential_context(cluster, "payer")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            held = [await dial(nursery, address, tls=tls, timeout=5, max_message_size=2**16)
                    for _ in range(2)]
            with pytest.raises(HandshakeError):  # closed at once, before TLS
                await echo_once(address, tls)
            assert echo.server.admission.refused >= 1
            await held[0].aclose()
            with trio.fail_after(5):
                while True:  # the node notices the close, frees the slot
                    try:
                        assert await echo_once(address, tls) == "ping"
                        break
                    except Exception:
                        await trio.sleep(0.05)
            await held[1].aclose()
            nursery.cancel_scope.cancel()


async def test_an_idle_connection_is_closed(cluster: ClusterConfig) -> None:
    echo = Echo(cluster)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            link = await dial(nursery, address, tls=credential_context(cluster, "payer"),
                              timeout=5, max_message_size=2**16)
            with pytest.raises(ConnectionClosed), trio.fail_after(FAST.idle_timeout + 3):
                await link.ws.get_message()
            await link.aclose()
            nursery.cancel_scope.cancel()


async def test_one_credential_cannot_take_every_slot(cluster: ClusterConfig) -> None:
    echo = Echo(cluster, Limits(max_connections=16, max_per_source=16, max_unauthenticated=4,
                                handshake_timeout=5, idle_timeout=30, max_per_principal=2))
    payer = credential_context(cluster, "payer")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await echo.start(nursery)
            held = [await dial(nursery, address, tls=payer, timeout=5, max_message_size=2**16)
                    for _ in range(2)]
            with pytest.raises(ConnectionRejected) as rejected:
                await echo_once(address, payer)
            assert rejected.value.status_code == 429
            assert await echo_once(address, credential_context(cluster, "operator")) == "ping"
            for link in held:
                await link.aclose()
            nursery.cancel_scope.cancel()
