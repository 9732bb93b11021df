"""Choosing ports to listen on, safely.

A port the kernel hands out for `bind(0)` comes from the ephemeral range -- the same range it
uses for the source ports of outgoing connections -- so between choosing it and binding it for
good, a connection may take it. Ports chosen here lie below that range and are free now.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000


def ephemeral_start() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, *, host: str = "127.0.0.1",
               avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct ports below the ephemeral range that nothing listens on now, none of
    them in `avoid` (ports already promised to something that has not bound them yet)."""
    top = ephemeral_start()
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(50 * count + 1000):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(LOWEST, top)
        if port not in chosen and port not in avoid and _bindable(host, port):
            chosen.append(port)
    raise OSError(f"could not find {count} free ports between {LOWEST} and {top}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
