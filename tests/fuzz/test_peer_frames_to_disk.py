"""Peer messages all the way down: decoded frames into a follower's NodeState and its real SQLite
store. Whatever a peer sends, every write succeeds and the data dir loads again afterwards (no
value that storage cannot hold, no id stored twice)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from quorapay.core.executor import Executor
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived
from quorapay.core.messages import PROTOCOL_VERSION, Append, Frame, Message, decode_frame, encode
from quorapay.core.node_state import NodeState
from quorapay.core.replica import Replica
from quorapay.core.timing import Timing
from quorapay.core.types import Commands, CreateAccount, Epoch, LogEntry, LogIndex, NodeId
from quorapay.node.storage import Store
from tests.core.harness import lone_ports
from tests.fuzz.test_peer_frames import FUZZ, messages, valid

MEMBERS = (NodeId("n1"), NodeId("n2"), NodeId("n3"))


def drain(state: NodeState[object], store: Store) -> None:
    """Carry out the work with the production executor, writing to the real store."""
    Executor(state, lone_ports()).run(store.write)


def follower(path: Path) -> tuple[NodeState[object], Store]:
    store = Store(path, cluster="fuzz", node_id="n2")
    restored = store.load()
    replica = Replica(node_id=NodeId("n2"), members=MEMBERS, timing=Timing(),
                      promised_epoch=restored.promised_epoch, promised_to=restored.promised_to,
                      log=restored.log, applied_index=restored.applied_index,
                      snapshot_index=restored.snapshot_index,
                      snapshot_epoch=restored.snapshot_epoch, snapshot_ts=restored.snapshot_ts)
    return NodeState(replica, restored.ledger), store


def opening_entries() -> Append:
    accounts = Commands(commands=(CreateAccount(id="a", currency="USD", allow_negative=True),
                                  CreateAccount(id="b", currency="USD")))
    return Append(epoch=Epoch(1), prev_index=LogIndex(0), prev_epoch=Epoch(0), entries=(
        LogEntry(index=LogIndex(1), epoch=Epoch(1), payload=accounts, ts=Timestamp(1, 0)),),
        commit=LogIndex(1), seq=1)


@FUZZ
@given(st.lists(messages, min_size=1, max_size=4), st.sampled_from(["n1", "n3"]))
def test_whatever_a_peer_sends_is_stored_and_loads_again(batch: list[Message],
                                                         sender: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "node.db"
        state, store = follower(path)
        state.step(MessageReceived(sender=NodeId("n1"), message=opening_entries()))
        drain(state, store)
        for message in batch:
            if not valid(message):
                continue
            frame = decode_frame(encode(Frame(version=PROTOCOL_VERSION, messages=(message,))))
            state.step(MessageReceived(sender=NodeId(sender), message=frame.messages[0]))
            drain(state, store)
        store.close()
        again, store = follower(path)
        assert again.replica.log.last_index >= again.replica.applied_index
        store.close()
