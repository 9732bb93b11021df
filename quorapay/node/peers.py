"""Peer links over websockets: one connection per pair of nodes, binary msgpack frames.

The node with the smaller id dials, the other accepts; both directions share the connection.
The first frame each way is a `Hello` (protocol version, cluster, node id) and a mismatch closes
the link. After that each websocket message is a `Frame`: a batch of protocol messages, so a
busy link sends few, large frames.

Sending never blocks the driver: a message for a peer that is not connected, or whose outbox is
full (a slow or paused peer), is dropped, and the protocol's retransmission covers it. A frame
that does not decode is a PeerError: the link is closed and the node keeps running.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from quorapay.config import ClusterConfig, NodeConfig
from quorapay.core.errors import PeerError
from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import (
    PROTOCOL_VERSION,
    Append,
    FetchReply,
    Frame,
    Hello,
    InstallSnapshot,
    Message,
    decode_frame,
    decode_hello,
    encode,
)
from quorapay.core.ready import Outgoing
from quorapay.core.types import NodeId
from quorapay.websocket import connect

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 2**20
OUTBOX_MESSAGES = 1024
FRAME_WEIGHT = 8192  # about this many commands per frame
HELLO_TIMEOUT = 5.0
REDIAL_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)


class PeerLinks:
    def __init__(self, cluster: ClusterConfig, me: NodeConfig,
                 inputs: trio.MemorySendChannel[Any]) -> None:
        self._cluster = cluster
        self._me = me
        self._peers = {n.id: n for n in cluster.nodes if n.id != me.id}
        self._inputs = inputs
        self._outboxes: dict[NodeId, trio.MemorySendChannel[Outgoing]] = {}
        self.dropped = 0

    @property
    def connected(self) -> list[NodeId]:
        return sorted(self._outboxes)

    def send(self, outgoing: Outgoing) -> None:
        """Queue a message for a peer without blocking; drop it if the peer is not reachable."""
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
        server = WebSocketServer(self._accept, listeners, max_message_size=MAX_FRAME_BYTES)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            for peer in self._peers.values():
                if peer.id > self._me.id:
                    nursery.start_soon(self._dial_forever, peer)
            task_status.started()

    async def _accept(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                hello = decode_hello(_as_bytes(await ws.get_message()))
            peer = self._check_hello(hello, dialer=True)
            await ws.send_message(self._hello())
        except (PeerError, msgspec.DecodeError, trio.TooSlowError) as exc:
            log.warning("refusing a peer link: %s", exc)
            await ws.aclose(code=1002, reason="bad hello")
            return
        except ConnectionClosed:
            return
        await self._run_link(peer, ws)

    # ------------------------------------------------------------------ dialing

    async def _dial_forever(self, peer: NodeConfig) -> None:
        failures = 0
        while True:
            linked: list[bool] = []
            try:
                await self._dial(peer, linked)
            except* (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as group:
                if failures == 2:
                    log.info("peer %s unreachable at %s (%s); retrying", peer.id, peer.peer_url,
                             type(group.exceptions[0]).__name__)
            except* (PeerError, msgspec.DecodeError) as group:
                log.warning("peer %s at %s is misconfigured: %s", peer.id, peer.peer_url,
                            group.exceptions[0])
            failures = 0 if linked else failures + 1
            await trio.sleep(REDIAL_DELAYS[min(failures, len(REDIAL_DELAYS) - 1)])

    async def _dial(self, peer: NodeConfig, linked: list[bool]) -> None:
        """One connection to a peer, from dial to hang-up. Appends to `linked` once up."""
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, self._me.route_to(peer), timeout=HELLO_TIMEOUT,
                                 max_message_size=MAX_FRAME_BYTES)
            ws = link.ws
            try:
                await ws.send_message(self._hello())
                with trio.fail_after(HELLO_TIMEOUT):
                    hello = decode_hello(_as_bytes(await ws.get_message()))
                self._check_hello(hello, dialer=False, expected=peer.id)
                linked.append(True)
                await self._run_link(peer.id, ws)
            finally:
                await link.aclose()

    # ------------------------------------------------------------------ the link

    def _hello(self) -> bytes:
        return encode(Hello(version=PROTOCOL_VERSION, cluster=self._cluster.name,
                            node=self._me.id))

    def _check_hello(self, hello: Hello, *, dialer: bool, expected: NodeId | None = None
                     ) -> NodeId:
        if hello.version != PROTOCOL_VERSION:
            raise PeerError(f"protocol version {hello.version}, this node speaks "
                            f"{PROTOCOL_VERSION}")
        if hello.cluster != self._cluster.name:
            raise PeerError(f"peer belongs to cluster {hello.cluster!r}")
        if hello.node not in self._peers or (expected is not None and hello.node != expected):
            raise PeerError(f"unexpected node id {hello.node!r}")
        if dialer and hello.node > self._me.id:
            raise PeerError(f"{hello.node} should accept links from {self._me.id}, not dial")
        return hello.node

    async def _run_link(self, peer: NodeId, ws: WebSocketConnection) -> None:
        outbox_send, outbox = trio.open_memory_channel[Outgoing](OUTBOX_MESSAGES)
        previous = self._outboxes.get(peer)
        if previous is not None:
            previous.close()  # a newer connection replaces the old one
        self._outboxes[peer] = outbox_send
        log.info("link to %s up", peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, ws, outbox, nursery.cancel_scope)
                await self._read(peer, ws)
                nursery.cancel_scope.cancel()
        finally:
            if self._outboxes.get(peer) is outbox_send:
                del self._outboxes[peer]
                log.info("link to %s down", peer)
            outbox_send.close()

    async def _read(self, peer: NodeId, ws: WebSocketConnection) -> None:
        while True:
            try:
                data = await ws.get_message()
                frame = decode_frame(_as_bytes(data))
            except ConnectionClosed:
                return
            except (msgspec.DecodeError, PeerError) as exc:
                log.warning("closing link to %s: undecodable frame (%s)", peer, exc)
                await ws.aclose(code=1002, reason="protocol error")
                return
            for message in frame.messages:
                await self._inputs.send(MessageReceived(sender=peer, message=message,
                                                        hlc=frame.hlc, wall_ms=frame.wall_ms))

    async def _write(self, ws: WebSocketConnection,
                     outbox: trio.MemoryReceiveChannel[Outgoing], link: trio.CancelScope,
                     ) -> None:
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
                frame = encode(Frame(version=PROTOCOL_VERSION, messages=tuple(batch), hlc=hlc,
                                     wall_ms=wall_ms))
                if len(frame) > MAX_FRAME_BYTES:  # the peer would close the link on it
                    log.error("dropping a %d-byte frame to %s: over the %d-byte limit (a "
                              "snapshot of a ledger this large cannot be sent)", len(frame),
                              ws.remote, MAX_FRAME_BYTES)
                    continue
                try:
                    await ws.send_message(frame)
                except ConnectionClosed:
                    break
        link.cancel()  # replaced or closed: end the reader too


def _weight(message: Message) -> int:
    if isinstance(message, Append | FetchReply):
        return 1 + sum(e.weight for e in message.entries)
    if isinstance(message, InstallSnapshot):
        return 1 + len(message.state.accounts) + len(message.state.transfers)
    return 1


def _as_bytes(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raise PeerError("text frame on a peer link")
    return data
