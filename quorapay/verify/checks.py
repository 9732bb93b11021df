"""Pure checks over what the verifier collected. Each finding names what broke and where.

Verdicts follow Jepsen: VALID (exit 0), INVALID (exit 1), UNKNOWN (exit 2: something could not be
checked, e.g. a node did not answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from quorapay.api.schema import DigestInfo, NodeStatus, TransferRecord


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {"valid": 0, "invalid": 1, "unknown": 2}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledged:
    """A transfer a client was told about (from a workload record)."""

    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    status: str  # the definitive status the client got, or "unknown"


@dataclass(slots=True, kw_only=True)
class Evidence:
    statuses: dict[str, NodeStatus]
    unreachable: dict[str, str]  # node -> why
    common_index: int
    at_common: dict[str, DigestInfo]  # every node's digests at the common index
    log_after: int = 0  # logs are compared after this index (the highest compaction point)
    at_applied: dict[str, DigestInfo]  # every node's digests at its own applied index
    entry_digests: dict[str, list[str]] = field(default_factory=dict)  # only if logs differ
    acknowledged: list[Acknowledged] = field(default_factory=list)
    found: dict[str, dict[str, TransferRecord]] = field(default_factory=dict)
    deep: bool = False  # at_applied holds replays and recounts (verify --deep)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    verdict: Verdict
    common_index: int
    nodes: list[str]
    findings: list[str]
    checked: list[str]


def check(evidence: Evidence) -> Report:
    findings: list[str] = []
    checked: list[str] = []
    nodes = sorted(evidence.at_common)
    checks = [("logs identical up to the common index", _logs_match),
              ("ledgers identical at the common index", _states_match),
              ("money conserved (balances sum to zero per currency)", _conserved),
              ("every node applied the same index", _converged),
              ("timestamps strictly increase with the index on every node", _ordered)]
    if evidence.deep:
        checks[2:2] = [("every ledger equals the replay of its log", _stored_matches_replay),
                       ("every ledger's digest equals a recount of its rows", _recounted)]
    if evidence.acknowledged:
        checks.append(("acknowledged transfers present exactly as acknowledged", _acknowledged))
    for name, fn in checks if nodes else []:
        problems = fn(evidence)
        checked.append(name)
        findings.extend(problems)
    if findings:
        verdict = Verdict.INVALID
    elif evidence.unreachable:
        verdict = Verdict.UNKNOWN
        findings = [f"{node} could not be checked: {why}"
                    for node, why in sorted(evidence.unreachable.items())]
    else:
        verdict = Verdict.VALID
    return Report(verdict=verdict, common_index=evidence.common_index, nodes=nodes,
                  findings=findings, checked=checked)


def _ordered(e: Evidence) -> list[str]:
    return [f"{node}: the timestamp of entry {d.unordered_at} is not above the one before it"
            for node, d in sorted(e.at_applied.items()) if d.unordered_at is not None]


def _reference(values: dict[str, str]) -> str:
    """The majority value (ties: the first node's), against which the others are named."""
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    return max(counts, key=lambda v: (counts[v], v == next(iter(values.values()))))


def _logs_match(e: Evidence) -> list[str]:
    digests = {n: d.log_digest for n, d in e.at_common.items()}
    if len(set(digests.values())) <= 1:
        return []
    good = _reference(digests)
    findings = []
    for node in sorted(n for n, d in digests.items() if d != good):
        first = first_divergence(e.entry_digests, node, good_nodes=[
            n for n, d in digests.items() if d == good], after=e.log_after)
        where = f" first divergent index {first}" if first else ""
        findings.append(f"{node}: committed log differs from the majority;{where}")
    return findings


def first_divergence(entry_digests: dict[str, list[str]], node: str, *,
                     good_nodes: list[str], after: int = 0) -> int | None:
    """The first index at which `node`'s entries differ from a node of the majority (the
    digests are of the entries after+1, after+2, ...)."""
    if node not in entry_digests or not good_nodes or good_nodes[0] not in entry_digests:
        return None
    theirs, ours = entry_digests[node], entry_digests[good_nodes[0]]
    for index, (a, b) in enumerate(zip(theirs, ours, strict=False), start=after + 1):
        if a != b:
            return index
    return after + min(len(theirs), len(ours)) + 1 if len(theirs) != len(ours) else None


def _states_match(e: Evidence) -> list[str]:
    """At the common index (replayed, or the live ledger of a node still there), and among
    nodes that reported their live ledgers at the same applied index."""
    findings = _differing({n: digest for n, d in e.at_common.items()
                           if (digest := d.state_digest or d.stored_state_digest) is not None},
                          e.common_index)
    for index in sorted({d.index for d in e.at_applied.values()}):
        at_index = {n: d.stored_state_digest for n, d in e.at_applied.items()
                    if d.index == index and d.stored_state_digest is not None}
        findings += [f for f in _differing(at_index, index) if f not in findings]
    return findings


def _differing(digests: dict[str, str], index: int) -> list[str]:
    if len(set(digests.values())) <= 1:
        return []
    good = _reference(digests)
    return [f"{node}: ledger at index {index} differs from the majority"
            for node in sorted(n for n, d in digests.items() if d != good)]


def _stored_matches_replay(e: Evidence) -> list[str]:
    return [f"{node}: live ledger at applied index {d.index} differs from the replay of its log"
            for node, d in sorted(e.at_applied.items())
            if d.stored_state_digest is not None and d.state_digest is not None
            and d.stored_state_digest != d.state_digest]


def _recounted(e: Evidence) -> list[str]:
    return [f"{node}: the digest kept by its ledger at applied index {d.index} differs from a "
            f"recount of its rows (a row changed outside the ledger's apply)"
            for node, d in sorted(e.at_applied.items())
            if d.recounted_state_digest is not None
            and d.recounted_state_digest != d.stored_state_digest]


def _conserved(e: Evidence) -> list[str]:
    return [f"{node}: money not conserved at index {d.index}: totals {d.totals}"
            for node, d in sorted(e.at_applied.items())
            if d.totals is not None and any(total != 0 for total in d.totals.values())]


def _converged(e: Evidence) -> list[str]:
    applied = {n: d.index for n, d in e.at_applied.items()}
    if len(set(applied.values())) <= 1:
        return []
    top = max(applied.values())
    return [f"{node}: applied index {index}, behind {top} (did not converge)"
            for node, index in sorted(applied.items()) if index != top]


def _acknowledged(e: Evidence) -> list[str]:
    findings = []
    for ack in e.acknowledged:
        for node in sorted(e.found):
            record = e.found[node].get(ack.id)
            if ack.status == "unknown":
                continue  # may be there or not; the ledger keys by id, so never twice
            if record is None:
                if ack.status == "ok":
                    findings.append(f"{node}: acknowledged transfer {ack.id} is missing")
                continue
            body = (record.debit, record.credit, record.amount, record.currency)
            if body != (ack.debit, ack.credit, ack.amount, ack.currency):
                findings.append(f"{node}: transfer {ack.id} has a different body than acknowledged")
            elif record.status != ack.status:
                findings.append(f"{node}: transfer {ack.id} is {record.status}, client was told "
                                f"{ack.status}")
    for ack_id in sorted({a.id for a in e.acknowledged}):
        indexes = {n: f[ack_id].index for n, f in e.found.items() if ack_id in f}
        if len(set(indexes.values())) > 1:
            findings.append(f"transfer {ack_id} was decided at different indexes: {indexes}")
    return findings
