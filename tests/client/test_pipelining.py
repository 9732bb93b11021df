"""The Python client pipelines: many tasks share one Client and its one connection, answers are
matched by `req` whatever their order, and a connection that fails mid-flight fails over every
request waiting on it to a retry. (A fake node over plain ws:// on 127.0.0.1: the protocol
is what is under test here; real nodes are in the integration tests.)"""

from __future__ import annotations

import contextlib
import json

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from quorapay.api import schema as api
from quorapay.client import Client


class FakeNode:
    """Answers each barrier with index = its req, holding answers until `batch` have come and
    sending them in reverse order; counts connections; may drop the first connection."""

    def __init__(self, batch: int, drop_first_after: int | None = None) -> None:
        self.batch, self.drop_first_after = batch, drop_first_after
        self.connections = 0
        self.received = 0

    async def handle(self, request: WebSocketRequest) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client is done with it
            await self._serve(await request.accept())

    async def _serve(self, ws: WebSocketConnection) -> None:
        self.connections += 1
        first = self.connections == 1
        held: list[int] = []
        while True:
            message = json.loads(await ws.get_message())
            self.received += 1
            if first and self.drop_first_after is not None \
                    and self.received >= self.drop_first_after:
                await ws.aclose()  # mid-flight: the requests on it were never answered
                return
            held.append(message["req"])
            if len(held) >= self.batch:
                for req in reversed(held):
                    await ws.send_message(api.encode(api.Response(req=req, index=req)).decode())
                held = []


async def serve(node: FakeNode, nursery: trio.Nursery) -> int:
    server = await nursery.start(serve_websocket, node.handle, "127.0.0.1", 0, None)
    return int(server.port)


async def test_many_tasks_share_one_connection_and_get_their_own_answers() -> None:
    node = FakeNode(batch=8)
    async with trio.open_nursery() as nursery:
        port = await serve(node, nursery)
        got: dict[int, int] = {}
        async with Client([f"ws://127.0.0.1:{port}/"], deadline=5) as client:

            async def one(n: int) -> None:
                response = await client.request(api.Barrier())
                got[n] = response.index or 0

            with trio.fail_after(5):
                async with trio.open_nursery() as tasks:
                    for n in range(32):
                        tasks.start_soon(one, n)
        assert node.connections == 1 and node.received == 32
        assert len(set(got.values())) == 32  # each task its own answer, none lost or shared
        nursery.cancel_scope.cancel()


async def test_a_connection_lost_mid_flight_retries_every_request_waiting_on_it() -> None:
    node = FakeNode(batch=4, drop_first_after=3)
    async with trio.open_nursery() as nursery:
        port = await serve(node, nursery)
        async with Client([f"ws://127.0.0.1:{port}/"], deadline=5,
                          retry_delays=(0.01,)) as client:
            answered = 0

            async def one() -> None:
                nonlocal answered
                await client.request(api.Barrier())
                answered += 1

            with trio.fail_after(5):
                async with trio.open_nursery() as tasks:
                    for _ in range(4):
                        tasks.start_soon(one)
            assert answered == 4
            assert client.retried["LOST_WRITE"] >= 3  # the writes in flight when it dropped
        assert node.connections == 2
        nursery.cancel_scope.cancel()


async def test_after_a_node_fails_to_answer_the_next_attempt_goes_to_the_next_node() -> None:
    silent, good = FakeNode(batch=10**9), FakeNode(batch=1)  # one never answers
    async with trio.open_nursery() as nursery:
        urls = [f"ws://127.0.0.1:{await serve(node, nursery)}/" for node in (silent, good)]
        async with Client(urls, deadline=5, attempt_timeout=0.3, connect_timeout=0.3,
                          retry_delays=(0.01,)) as client:
            started = trio.current_time()
            with trio.fail_after(5):
                await client.request(api.Barrier())
            assert trio.current_time() - started < 1.0  # one attempt timeout, not a redial
        assert silent.connections == 1 and good.received == 1
        nursery.cancel_scope.cancel()
