"""Who is on the other end of a connection, and what each role may do.

Identities come from certificates signed by the cluster's CA, never from what a peer says: a
certificate names its holder in a URI subject alternative name,
`urn:quorapay:<cluster>:<role>:<name>`. Nodes hold role `node` (name: the node id); clients hold
`payer` or `operator` (name: the credential's name).

* node: speaks the peer protocol as the node its certificate names, on the peer port only;
* payer: opens ordinary accounts, submits transfers, reads balances and transfers;
* operator: what a payer may, and opens issuer accounts; status, barrier, digest, entry
  digests, entries, local transfers and switchover (what `status`, `verify`, `chaos`, `check`
  and `switchover` need).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

URN_PREFIX = "urn:quorapay:"


class Role(StrEnum):
    NODE = "node"
    PAYER = "payer"
    OPERATOR = "operator"


CLIENT_ROLES = (Role.PAYER, Role.OPERATOR)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """A verified identity: the holder of a certificate of `cluster`'s CA."""

    cluster: str
    role: Role
    name: str

    @property
    def uri(self) -> str:
        return f"{URN_PREFIX}{self.cluster}:{self.role.value}:{self.name}"

    def __str__(self) -> str:
        return f"{self.role.value} {self.name!r}"


def parse_uri(uri: str) -> Principal | None:
    """The principal a certificate's URI names, or None if it is not one of ours."""
    if not uri.startswith(URN_PREFIX):
        return None
    parts = uri[len(URN_PREFIX):].split(":")
    if len(parts) != 3 or not all(parts):
        return None
    cluster, role, name = parts
    try:
        return Principal(cluster=cluster, role=Role(role), name=name)
    except ValueError:
        return None


def principal_of(peer_certificate: dict[str, Any] | None, cluster: str) -> Principal | None:
    """The principal of a verified peer certificate (`SSLObject.getpeercert()`), if it names
    exactly one of this cluster's."""
    if not peer_certificate:
        return None
    found = [p for kind, value in peer_certificate.get("subjectAltName", ())
             if kind == "URI" and (p := parse_uri(str(value))) is not None]
    if len(found) != 1 or found[0].cluster != cluster:
        return None
    return found[0]


# Operations of the client API (the "op" of a request) each role may call. Issuer accounts
# (allow_negative) create money: only an operator may open them.
PAYER_OPS = frozenset({"create_accounts", "submit_transfers", "get_balances", "get_transfers"})
OPERATOR_OPS = PAYER_OPS | {"close_accounts", "reopen_accounts", "barrier", "status", "digest",
                            "entry_digests", "entries", "local_transfers", "switchover"}


def may_call(principal: Principal, op: str) -> bool:
    match principal.role:
        case Role.OPERATOR:
            return op in OPERATOR_OPS
        case Role.PAYER:
            return op in PAYER_OPS
        case Role.NODE:
            return False
    return False


def role_needed(op: str) -> Role:
    return Role.PAYER if op in PAYER_OPS else Role.OPERATOR
