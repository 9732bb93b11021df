"""Network faults of a local cluster, as edits of the proxy's fault file.

Endpoints are node ids, "zk" (every ZooKeeper server), "zk1".."zk3", and "client". Every verb
returns what it changed, one line per link direction, and `heal` undoes all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from quorapay.chaos.links import DirectionFault, Faults, LinkFaults
from quorapay.cluster.plan import LinkPlan, Plan
from quorapay.core.errors import QuorapayError


class ChaosError(QuorapayError):
    """The fault cannot be injected as asked."""


def _matches(endpoint: str, name: str) -> bool:
    return name == endpoint or (name == "zk" and endpoint.startswith("zk"))


def links_between(plan: Plan, x: str, y: str) -> list[tuple[LinkPlan, str]]:
    """Every (link, direction) that carries traffic from endpoint x to endpoint y."""
    found = []
    for link in plan.links:
        if _matches(link.a, x) and _matches(link.b, y):
            found.append((link, f"{link.a}>{link.b}"))
        elif _matches(link.b, x) and _matches(link.a, y):
            found.append((link, f"{link.b}>{link.a}"))
    if not found:
        raise ChaosError(f"no link between {x} and {y}")
    return found


def _set(faults: Faults, targets: Iterable[tuple[LinkPlan, str]],
         change: Callable[[DirectionFault], DirectionFault]) -> tuple[Faults, list[str]]:
    links = dict(faults.links)
    done = []
    for link, direction in targets:
        current = links.get(link.name, LinkFaults())
        directions = dict(current.directions)
        directions[direction] = change(directions.get(direction, DirectionFault()))
        links[link.name] = msgspec.structs.replace(current, directions=directions)
        done.append(direction)
    return Faults(links=links), done


def cut(faults: Faults, plan: Plan, groups: list[list[str]]) -> tuple[Faults, list[str]]:
    """Cut both ways between every two groups of endpoints."""
    targets = [t for g in groups for h in groups if g is not h
               for x in g for y in h for t in links_between(plan, x, y)]
    return _set(faults, targets, lambda f: msgspec.structs.replace(f, cut=True))


def partition(faults: Faults, plan: Plan, nodes: list[str], groups: list[list[str]]
              ) -> tuple[Faults, list[str]]:
    """Named groups of nodes; nodes left out form one more group."""
    named = [n for g in groups for n in g]
    unknown = sorted(set(named) - set(nodes))
    if unknown:
        raise ChaosError(f"unknown node(s): {', '.join(unknown)}")
    if len(set(named)) != len(named):
        raise ChaosError("a node is in two groups")
    rest = [n for n in nodes if n not in named]
    groups = [g for g in [*groups, rest] if g]
    if len(groups) < 2:
        raise ChaosError("a partition needs at least two groups")
    return cut(faults, plan, groups)


def ring(faults: Faults, plan: Plan, nodes: list[str]) -> tuple[Faults, list[str]]:
    """Each node keeps its two ring neighbours only: everyone sees a majority, no two the same."""
    if len(nodes) < 5:
        raise ChaosError("majorities-ring needs at least 5 nodes")
    targets = []
    for i, x in enumerate(nodes):
        neighbours = {nodes[(i - 1) % len(nodes)], nodes[(i + 1) % len(nodes)]}
        targets += [t for y in nodes if y != x and y not in neighbours
                    for t in links_between(plan, x, y)]
    return _set(faults, targets, lambda f: msgspec.structs.replace(f, cut=True))


def bridge(faults: Faults, plan: Plan, nodes: list[str]) -> tuple[Faults, list[str]]:
    """Two halves that cannot talk, and one node in the middle that talks to both."""
    if len(nodes) < 5:
        raise ChaosError("bridge needs at least 5 nodes")
    half = len(nodes) // 2
    return cut(faults, plan, [nodes[:half], nodes[half + 1:]])


def delay(faults: Faults, plan: Plan, x: str, y: str, ms: float, jitter: float
          ) -> tuple[Faults, list[str]]:
    return _set(faults, links_between(plan, x, y),
                lambda f: msgspec.structs.replace(f, delay_ms=ms, jitter_ms=jitter))


def drop(faults: Faults, plan: Plan, x: str, y: str, fraction: float) -> tuple[Faults, list[str]]:
    if not 0 < fraction <= 1:
        raise ChaosError("the fraction to drop must be in (0, 1]")
    return _set(faults, links_between(plan, x, y),
                lambda f: msgspec.structs.replace(f, drop=fraction))


def reset(faults: Faults, plan: Plan, x: str, y: str) -> tuple[Faults, list[str]]:
    links = dict(faults.links)
    names = sorted({link.name for link, _ in links_between(plan, x, y)})
    for name in names:
        links[name] = msgspec.structs.replace(links.get(name, LinkFaults()), reset=True)
    return Faults(links=links), names


def describe(faults: Faults) -> list[str]:
    """Every fault in effect, one line each."""
    lines = []
    for name, link in sorted(faults.links.items()):
        if link.reset:
            lines.append(f"{name}: reset (connections refused)")
        for direction, fault in sorted(link.directions.items()):
            parts = (["cut"] if fault.cut else []) + (
                [f"delay {fault.delay_ms:g}ms" + (f" ±{fault.jitter_ms:g}ms"
                                                  if fault.jitter_ms else "")]
                if fault.delay_ms or fault.jitter_ms else []) + (
                [f"drop {fault.drop:g}"] if fault.drop else [])
            if parts:
                lines.append(f"{direction}: {', '.join(parts)}")
    return lines
