"""Peer links over websockets: one connection per pair of nodes, binary msgpack frames.

The node with the smaller id dials, the other accepts; both directions share the connection.
Both ends prove who they are with mutual TLS (`quorapay.transport`): the acceptor admits only
certificates naming a node of this cluster, the dialer checks the certificate names the node it
dialed. The first frame each way is a `Hello` (protocol version, cluster, node id), which must
name the certificate's node; a mismatch closes the link. After that each websocket message is a
`Frame`: a batch of protocol messages, so a busy link sends few, large frames.

A second connection from a node that already has a live link (one that delivered a frame within
`LIVE_LINK_SECONDS`) is refused: it cannot take the link over. A link that has been quiet that
long is replaced -- the node restarted, or the old connection died unnoticed.

Sending never blocks the driver: a message for a peer that is not connected, or whose outbox is
full (a slow or paused peer), is dropped, and the protocol's retransmission covers it. A frame
that does not decode is a PeerError: the link is closed and the node keeps running.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, cast

import msgspec
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import PeerError
from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Append,
    FetchReply,
    Frame,
    Hello,
    InstallSnapshot,
    Message,
    SnapshotChunk,
    StreamMessage,
    WireMessage,
    decode_frame,
    decode_hello,
    encode,
)
from quorapay.core.ready import Outgoing
from quorapay.core.types import NodeId
from quorapay.security.identity import Principal, Role
from quorapay.transport.dial import dial
from quorapay.transport.limits import PEER_LIMITS
from quorapay.transport.server import Link, Refusal, WebsocketServer

log = logging.getLogger(__name__)

OUTBOX_MESSAGES = 1024
FRAME_WEIGHT = 8192  # about this many commands per frame
HELLO_TIMEOUT = 5.0
REDIAL_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
LIVE_LINK_SECONDS = 1.0  # a link carries a clock probe every 0.25 s at least


class PeerLinks:
    def __init__(self, cluster: ClusterConfig, me: NodeConfig,
                 inputs: trio.MemorySendChannel[Any], *, server_tls: ssl.SSLContext | None,
                 dial_tls: ssl.SSLContext | None) -> None:
        self._cluster = cluster
        self._me = me
        self._peers = {n.id: n for n in cluster.nodes if n.id != me.id}
        self._inputs = inputs
        self._dial_tls = dial_tls
        self._outboxes: dict[NodeId, trio.MemorySendChannel[Outgoing]] = {}
        self._links: dict[NodeId, Link] = {}
        self.server = WebsocketServer(self._accept, what="peer", cluster=cluster.name,
                                      tls=server_tls, authorize=self._authorize,
                                      limits=PEER_LIMITS, max_message_size=MAX_FRAME_BYTES)
        self._secure = server_tls is not None
        self.dropped = 0

    @property
    def connected(self) -> list[NodeId]:
        return sorted(self._outboxes)

    def send(self, outgoing: Outgoing) -> None:
        """Queue a message for a peer without blocking; drop it if the peer is not reachable."""
        assert not isinstance(outgoing.message, InstallSnapshot), "snapshots go in parts"
        outbox = self._outboxes.get(outgoing.to)
        try:
            if outbox is None:
                raise trio.WouldBlock
            outbox.send_nowait(outgoing)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    # ------------------------------------------------------------------ accepting

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept links from peers with smaller ids, and dial those with larger ones."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.serve, listeners)
            for peer in self._peers.values():
                if peer.id > self._me.id:
                    nursery.start_soon(self._dial_forever, peer)
            task_status.started()

    def _authorize(self, principal: Principal | None) -> Refusal | None:
        if not self._secure:
            return None  # an insecure benchmark: anyone may say anything
        if principal is None or principal.role is not Role.NODE \
                or principal.name not in self._peers:
            return Refusal(403, "only the other nodes of this cluster may connect here")
        return None

    async def _accept(self, link: Link) -> None:
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                hello = decode_hello(_as_bytes(await link.receive()))
            peer = self._check_hello(hello, link.principal, dialer=True)
            await link.send(self._hello())
        except (PeerError, msgspec.DecodeError, trio.TooSlowError) as exc:
            log.warning("refusing a peer link from %s: %s", link.remote, exc)
            await link.ws.aclose(code=1008, reason="bad hello")
            return
        except ConnectionClosed:
            return
        await self._run_link(peer, link)

    # ------------------------------------------------------------------ dialing

    async def _dial_forever(self, peer: NodeConfig) -> None:
        failures = 0
        while True:
            linked: list[bool] = []
            try:
                await self._dial(peer, linked)
            except* (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as group:
                if failures == 2:
                    log.info("peer %s unreachable at %s (%s); retrying", peer.id,
                             self._me.route_to(peer), group.exceptions[0])
            except* (PeerError, msgspec.DecodeError) as group:
                log.warning("peer %s at %s is misconfigured: %s", peer.id,
                            self._me.route_to(peer), group.exceptions[0])
            failures = 0 if linked else failures + 1
            await trio.sleep(REDIAL_DELAYS[min(failures, len(REDIAL_DELAYS) - 1)])

    async def _dial(self, peer: NodeConfig, linked: list[bool]) -> None:
        """One connection to a peer, from dial to hang-up. Appends to `linked` once up."""
        address = self._me.route_to(peer)
        async with trio.open_nursery() as nursery:
            dialed = await dial(nursery, address, tls=self._dial_tls, cluster=self._cluster.name,
                                timeout=HELLO_TIMEOUT, max_message_size=MAX_FRAME_BYTES)
            link = Link(dialed.ws, dialed.principal, str(address))
            try:
                if self._secure and dialed.principal != Principal(
                        cluster=self._cluster.name, role=Role.NODE, name=peer.id):
                    raise PeerError(f"its certificate names {dialed.principal or 'nobody'}, "
                                    f"not node {peer.id}")
                await link.send(self._hello())
                with trio.fail_after(HELLO_TIMEOUT):
                    hello = decode_hello(_as_bytes(await link.receive()))
                self._check_hello(hello, dialed.principal, dialer=False, expected=peer.id)
                linked.append(True)
                await self._run_link(peer.id, link)
            finally:
                await dialed.aclose()

    # ------------------------------------------------------------------ the link

    def _hello(self) -> bytes:
        return encode(Hello(version=PROTOCOL_VERSION, cluster=self._cluster.name,
                            node=self._me.id))

    def _check_hello(self, hello: Hello, principal: Principal | None, *, dialer: bool,
                     expected: NodeId | None = None) -> NodeId:
        if hello.version != PROTOCOL_VERSION:
            raise PeerError(f"protocol version {hello.version}, this node speaks "
                            f"{PROTOCOL_VERSION}")
        if hello.cluster != self._cluster.name:
            raise PeerError(f"peer belongs to cluster {hello.cluster!r}")
        if hello.node not in self._peers or (expected is not None and hello.node != expected):
            raise PeerError(f"unexpected node id {hello.node!r}")
        if principal is not None and hello.node != principal.name:
            raise PeerError(f"says it is {hello.node} but its certificate names {principal}")
        if dialer and hello.node > self._me.id:
            raise PeerError(f"{hello.node} should accept links from {self._me.id}, not dial")
        return hello.node

    async def _run_link(self, peer: NodeId, link: Link) -> None:
        current = self._links.get(peer)
        if current is not None and trio.current_time() - current.last_received \
                < LIVE_LINK_SECONDS:
            log.warning("refusing a second link from %s (%s): its link (%s) is alive", peer,
                        link.remote, current.remote)
            await link.ws.aclose(code=1008, reason="already linked")
            return
        outbox_send, outbox = trio.open_memory_channel[Outgoing](OUTBOX_MESSAGES)
        previous = self._outboxes.get(peer)
        if previous is not None:
            previous.close()  # a newer connection replaces a quiet one
        self._outboxes[peer] = outbox_send
        self._links[peer] = link
        log.info("link to %s up", peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, link, outbox, nursery.cancel_scope)
                await self._read(peer, link)
                nursery.cancel_scope.cancel()
        finally:
            if self._outboxes.get(peer) is outbox_send:
                del self._outboxes[peer]
                del self._links[peer]
                log.info("link to %s down", peer)
            outbox_send.close()

    async def _read(self, peer: NodeId, link: Link) -> None:
        while True:
            try:
                with trio.fail_after(PEER_LIMITS.idle_timeout):
                    data = await link.receive()
                frame = decode_frame(_as_bytes(data))
            except ConnectionClosed:
                return
            except trio.TooSlowError:
                log.info("closing link to %s: nothing received for %gs", peer,
                         PEER_LIMITS.idle_timeout)
                return
            except (msgspec.DecodeError, PeerError) as exc:
                log.warning("closing link to %s: undecodable frame (%s)", peer, exc)
                await link.ws.aclose(code=1002, reason="protocol error")
                return
            for message in frame.messages:
                await self._inputs.send(MessageReceived(sender=peer, message=message,
                                                        hlc=frame.hlc, wall_ms=frame.wall_ms))

    async def _write(self, link: Link, outbox: trio.MemoryReceiveChannel[Outgoing],
                     scope: trio.CancelScope) -> None:
        async with outbox:
            async for first in outbox:
                batch, weight = [first.message], _weight(first.message)
                hlc, wall_ms = first.hlc, first.wall_ms
                while weight < FRAME_WEIGHT:
                    try:
                        outgoing = outbox.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(outgoing.message)
                    weight += _weight(outgoing.message)
                    hlc, wall_ms = max(hlc, outgoing.hlc), max(wall_ms, outgoing.wall_ms)
                frame = encode(Frame(version=PROTOCOL_VERSION,
                                     messages=cast(tuple[WireMessage, ...], tuple(batch)), hlc=hlc,
                                     wall_ms=wall_ms))
                if len(frame) > MAX_FRAME_BYTES:  # the peer would close the link on it
                    log.error("dropping a %d-byte frame to %s: over the %d-byte limit",
                              len(frame), link.remote, MAX_FRAME_BYTES)
                    continue
                try:
                    await link.send(frame)
                except ConnectionClosed:
                    break
        scope.cancel()  # replaced or closed: end the reader too


def _weight(message: Message | StreamMessage) -> int:
    if isinstance(message, Append | FetchReply):
        return 1 + sum(e.weight for e in message.entries)
    if isinstance(message, SnapshotChunk):
        return 1 + len(message.accounts) + len(message.transfers)
    return 1


def _as_bytes(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raise PeerError("text frame on a peer link")
    return data
