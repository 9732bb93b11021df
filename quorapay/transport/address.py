"""Addresses and websocket URLs: the only place a scheme (ws:// or wss://) is spelled."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}):(?P<port>\d{1,5})")


@dataclass(frozen=True, slots=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """'host:port' -> Address; ValueError if it is not one."""
    match = _HOST_PORT.fullmatch(text.strip())
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{text!r} is not host:port")
    return Address(match["host"], int(match["port"]))


def websocket_url(address: Address, *, tls: bool) -> str:
    return f"{'wss' if tls else 'ws'}://{address.host}:{address.port}/"


def parse_url(url: str) -> tuple[Address, bool]:
    """A ws:// or wss:// URL -> (address, whether it is TLS); ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or parts.hostname is None or parts.port is None:
        raise ValueError(f"not a wss://host:port/ (or ws://) url: {url}")
    return Address(parts.hostname, parts.port), parts.scheme == "wss"
