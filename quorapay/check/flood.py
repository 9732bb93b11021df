"""A connection flood, as its own process: hold CONCURRENCY half-open TCP connections to
HOST:PORT for SECONDS, opening a new one whenever one is closed; print how many were opened.

    python -m quorapay.check.flood HOST PORT SECONDS CONCURRENCY

A process of its own, so that the flood competes with the cluster for the machine as an attacker
on the same host would, without slowing the bank test's own clients inside their process.
"""

from __future__ import annotations

import sys

import trio


async def flood(host: str, port: int, seconds: float, concurrency: int) -> int:
    opened = 0
    limiter = trio.CapacityLimiter(concurrency)

    async def hold(token: object) -> None:
        nonlocal opened
        try:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                return
            opened += 1
            async with stream:
                while await stream.receive_some(1024):  # until the other end closes it
                    pass
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            limiter.release_on_behalf_of(token)

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            while True:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(hold, token)
    return opened


def main() -> None:
    host, port, seconds, concurrency = sys.argv[1:5]
    print(trio.run(flood, host, int(port), float(seconds), int(concurrency)))


if __name__ == "__main__":
    main()
