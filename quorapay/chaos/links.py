"""The faults on the links of a local cluster: the file the chaos proxy obeys.

Every connection in a local cluster runs through the chaos proxy (`quorapay.chaos.proxy`): one
link per pair of nodes (the connection their peer traffic shares), one per node and ZooKeeper
server, and one per node for its clients. A link joins two endpoints, `a` (who dials) and `b`;
faults are set per direction ("a>b", "b>a") -- except `reset`, which kills the link's
connections both ways. Chaos verbs rewrite `faults.json` atomically; the proxy applies each change
to the connections already open as well as to new ones.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from quorapay.files import write_private


class DirectionFault(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    cut: bool = False  # a blackhole: nothing is delivered, connections hang
    delay_ms: float = 0.0  # each chunk waits this long ...
    jitter_ms: float = 0.0  # ... plus up to this much more (order is kept)
    drop: float = 0.0  # each chunk kills its connection with this probability

    @property
    def active(self) -> bool:
        return self != DirectionFault()


class LinkFaults(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    reset: bool = False  # close the link's connections and refuse new ones
    directions: dict[str, DirectionFault] = {}

    @property
    def active(self) -> bool:
        return self.reset or any(f.active for f in self.directions.values())


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    links: dict[str, LinkFaults] = {}

    def on(self, link: str) -> LinkFaults:
        return self.links.get(link, LinkFaults())

    def direction(self, link: str, direction: str) -> DirectionFault:
        return self.on(link).directions.get(direction, DirectionFault())


def read_faults(path: Path) -> Faults:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Faults)
    except FileNotFoundError:
        return Faults()


def write_faults(path: Path, faults: Faults) -> None:
    kept = {name: link for name, link in faults.links.items() if link.active}
    _write_atomically(path, msgspec.json.encode(Faults(links=kept)))


def _write_atomically(path: Path, data: bytes) -> None:
    write_private(path, data)
