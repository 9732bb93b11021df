"""Dialing fails fast and cleanly: no hang, no leaked socket, nothing escapes. (Plain ws:// here:
these are about what trio-websocket does with a bad server; TLS is in test_server.py.)"""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionRejected, HandshakeError

from quorapay.transport.address import Address
from quorapay.transport.dial import dial


async def serve_raw(respond: bytes | None, *, task_status: trio.TaskStatus[int]) -> None:
    """A TCP server that answers every connection with `respond` (None: close at once)."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            if respond is not None:
                await stream.receive_some(4096)
                await stream.send_all(respond)
                await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_an_answer_that_is_not_a_websocket_upgrade_is_refused_at_once() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_raw, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        with trio.fail_after(3), pytest.raises(ConnectionRejected) as rejected:
            await dial(nursery, Address("127.0.0.1", port), tls=None, timeout=10,
                       max_message_size=2**20)
        assert rejected.value.status_code == 200
        nursery.cancel_scope.cancel()


async def test_a_connection_closed_during_the_handshake_fails_at_once() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_raw, None)  # a node dying mid-handshake, or a proxy
        with trio.fail_after(1), pytest.raises(HandshakeError, match="closed the connection"):
            await dial(nursery, Address("127.0.0.1", port), tls=None, timeout=10,
                       max_message_size=2**20)
        nursery.cancel_scope.cancel()


async def test_a_silent_server_times_out() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")  # never accepts
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(5), pytest.raises(HandshakeError, match="timed out"):
            await dial(nursery, Address("127.0.0.1", port), tls=None, timeout=0.5,
                       max_message_size=2**20)
        for listener in listeners:
            await listener.aclose()
        nursery.cancel_scope.cancel()


async def test_a_write_cut_short_by_the_deadline_is_unknown_and_its_connection_dropped() -> None:
    # A node that accepts and never answers (paused): the write went out, so its outcome is
    # unknown -- TIMEOUT, never UNAVAILABLE -- and the next request must not reuse the link.
    from trio_websocket import serve_websocket

    from quorapay.api import schema as api
    from quorapay.client import Client, ClientError

    async def accept_and_ignore(request):
        ws = await request.accept()
        await trio.sleep_forever()
        await ws.aclose()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, accept_and_ignore, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/"
        async with Client([url], deadline=1.0, attempt_timeout=10.0) as client:
            with trio.fail_after(5), pytest.raises(ClientError) as failure:
                await client.submit_transfers([api.TransferSpec(id="t", debit="a", credit="b",
                                                                amount=1)])
            assert failure.value.code is api.ErrorCode.TIMEOUT
            assert client._ws is None  # dropped, not reused
        nursery.cancel_scope.cancel()
