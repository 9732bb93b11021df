"""Election rules over ZooKeeper's view, as pure functions shared by the node and simulators.

Candidates are ephemeral sequential znodes named `<node>__<token>__<sequence>`; the lowest
sequence leads, and each other candidate watches only its predecessor (no herd effect). The
token is fixed per ZooKeeper session, so a create retried after connection loss finds its own
znode instead of making a second one. Epochs come from a counter advanced by compare-and-set,
never below the highest epoch the node has seen, so every grant is unique and strictly larger.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from quorapay.core.types import Epoch, NodeId

_SEPARATOR = "__"


def candidate_prefix(node_id: NodeId, token: str) -> str:
    return f"{node_id}{_SEPARATOR}{token}{_SEPARATOR}"


def candidate_node(name: str) -> NodeId | None:
    """The node a candidate znode belongs to, or None if the name is not a candidate's."""
    parts = name.split(_SEPARATOR)
    return NodeId(parts[0]) if len(parts) == 3 and parts[2].isdigit() else None


def election_order(children: Iterable[str], members: Collection[str] = ()) -> list[str]:
    """Candidates, leader first: by the sequence number ZooKeeper appended. With `members`,
    candidates of other nodes are left out (a squatter would block the queue for good)."""
    return sorted((c for c in children if (node := candidate_node(c)) is not None
                   and (not members or node in members)),
                  key=lambda c: int(c.rsplit(_SEPARATOR, 1)[1]))


def own_candidate(children: Iterable[str], prefix: str) -> str | None:
    return next((c for c in children if c.startswith(prefix)), None)


def predecessor(children: Iterable[str], mine: str, members: Collection[str] = ()
                ) -> str | None:
    """The candidate just ahead of `mine`, or None when `mine` leads. `mine` must be listed."""
    order = election_order(children, members)
    position = order.index(mine)
    return order[position - 1] if position else None


def next_epoch(current: Epoch, floor: Epoch) -> Epoch:
    """The epoch to claim: above the counter and above every epoch this node has seen."""
    return Epoch(max(current, floor) + 1)
