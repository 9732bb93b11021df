"""`quorapay node rebuild` refuses, changing nothing, when the emptied node could not catch up:
the others' logs are compacted and their ledger is over what one snapshot carries."""

from __future__ import annotations

from quorapay.cluster.backup import snapshot_refusal
from quorapay.core.node_state import MAX_SNAPSHOT_BYTES
from tests.cluster.test_health import cluster, follower, leader

LARGE = MAX_SNAPSHOT_BYTES + 1


def test_a_node_is_rebuilt_from_a_log_or_a_snapshot_that_fits() -> None:
    assert snapshot_refusal(cluster(), "n3") is None  # nothing compacted: the log is enough
    fits = cluster(n1=leader(log_start=500, snapshot_bytes=MAX_SNAPSHOT_BYTES))
    assert snapshot_refusal(fits, "n3") is None
    whole_log = cluster(n1=leader(log_start=0, snapshot_bytes=LARGE))
    assert snapshot_refusal(whole_log, "n3") is None


def test_a_rebuild_that_would_need_a_snapshot_over_one_frame_is_refused() -> None:
    found = cluster(n2=follower("n2", log_start=900, snapshot_bytes=LARGE), n3="unreachable")
    refusal = snapshot_refusal(found, "n1")
    assert refusal is not None and "n2's log is compacted (up to 900)" in refusal
    assert "quorapay restore n1" in refusal
    assert snapshot_refusal(found, "n2") is None  # its own ledger is what it would lose
