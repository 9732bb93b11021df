"""The verifier's checks over crafted evidence: each names what broke."""

from quorapay.api.schema import DigestInfo
from quorapay.verify.checks import Evidence, Verdict, check


def digest(node: str, *, unordered_at: int | None = None) -> DigestInfo:
    return DigestInfo(node=node, index=10, log_digest="L", state_digest="S",
                      stored_state_digest="S", totals={"USD": 0}, unordered_at=unordered_at)


def evidence(**unordered: int) -> Evidence:
    nodes = ("n1", "n2", "n3")
    return Evidence(statuses={}, unreachable={}, common_index=10,
                    at_common={n: digest(n) for n in nodes},
                    at_applied={n: digest(n, unordered_at=unordered.get(n)) for n in nodes})


def test_ordered_timestamps_are_valid() -> None:
    report = check(evidence())
    assert report.verdict is Verdict.VALID
    assert "timestamps strictly increase with the index on every node" in report.checked


def test_a_timestamp_out_of_order_is_named_with_its_node_and_index() -> None:
    report = check(evidence(n2=7))
    assert report.verdict is Verdict.INVALID
    assert report.findings == ["n2: the timestamp of entry 7 is not above the one before it"]


def test_replays_and_recounts_are_checked_only_when_deep() -> None:
    shallow = check(evidence())
    assert "every ledger equals the replay of its log" not in shallow.checked
    deep = evidence()
    deep.deep = True
    deep.at_applied["n3"] = DigestInfo(node="n3", index=10, log_digest="L", state_digest="S",
                                       stored_state_digest="S", recounted_state_digest="R",
                                       totals={"USD": 0}, deep=True)
    report = check(deep)
    assert "every ledger equals the replay of its log" in report.checked
    assert report.verdict is Verdict.INVALID
    assert report.findings == ["n3: the digest kept by its ledger at applied index 10 differs "
                               "from a recount of its rows (a row changed outside the "
                               "ledger's apply)"]


def test_ledgers_are_compared_at_the_applied_index_when_none_is_at_the_common_one() -> None:
    """Every node moved past the common index before it was asked: the live ledgers at the
    applied index still have to agree."""
    moved = evidence()
    for node in moved.at_common:
        moved.at_common[node] = DigestInfo(node=node, index=10, log_digest="L",
                                           stored_state_digest=None, totals=None)
    for node in moved.at_applied:
        moved.at_applied[node] = DigestInfo(node=node, index=12, log_digest="L2",
                                            stored_state_digest="X" if node == "n3" else "S",
                                            totals={"USD": 0})
    report = check(moved)
    assert report.verdict is Verdict.INVALID
    assert report.findings == ["n3: ledger at index 12 differs from the majority"]
