"""The chaos proxy under a flood: an established link is never closed to make room for new
connections, however many arrive; new ones take the slots of the quietest newcomers."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from quorapay.chaos.proxy import FaultState, LinkProxy
from quorapay.cluster.plan import LinkPlan
from quorapay.cluster.ports import free_ports


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(1024):
            await stream.send_all(data)


async def test_a_flood_cannot_evict_an_established_link(tmp_path: Path) -> None:
    listen, target = free_ports(2)
    link = LinkPlan(name="n1-zk1", a="n1", b="zk1", listen_port=listen, target_port=target)
    proxy = LinkProxy(link, FaultState(tmp_path / "faults.json"), random.Random(1), capacity=4,
                      established_after=0.3)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(target, host="127.0.0.1")
            await nursery.start(trio.serve_listeners, echo, listeners)
            await nursery.start(proxy.serve)
            real = await trio.open_tcp_stream("127.0.0.1", listen)
            for _ in range(4):  # a live link: traffic both ways, for longer than 0.3 s
                await real.send_all(b"ping")
                assert await real.receive_some(4) == b"ping"
                await trio.sleep(0.1)
            flood = [await trio.open_tcp_stream("127.0.0.1", listen) for _ in range(40)]
            await trio.sleep(0.2)
            await real.send_all(b"still")
            assert await real.receive_some(5) == b"still"
            assert proxy.evicted >= 30  # newcomers took each other's slots
            for stream in [real, *flood]:
                await stream.aclose()
            nursery.cancel_scope.cancel()
