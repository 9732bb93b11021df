"""Property-based fuzzing of what a remote peer reaches: the frame decoder, and the replica behind
it in each of its roles. Raw bytes, mutated valid frames, and structurally valid messages with
extreme values (epochs 0 and 2^53 - 1 and beyond, huge indexes, empty and large batches) either
fail to decode or are handled: nothing raises, and the replica's own state stays well-formed."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from quorapay.core.bounds import MAX_COUNTER
from quorapay.core.hlc import Timestamp
from quorapay.core.inputs import MessageReceived
from quorapay.core.ledger import AccountRow, LedgerState, Status, TransferRow
from quorapay.core.messages import (
    PROTOCOL_VERSION,
    Append,
    AppendAck,
    AppendNack,
    ClockEcho,
    ClockProbe,
    Fetch,
    FetchReply,
    Frame,
    Message,
    Prepare,
    Promise,
    RefusalReason,
    Refused,
    SnapshotAck,
    SnapshotChunk,
    decode_frame,
    encode,
)
from quorapay.core.replica import Replica
from quorapay.core.types import (
    AccountId,
    Cents,
    CloseAccount,
    Commands,
    CreateAccount,
    Epoch,
    EpochStart,
    Linked,
    LogEntry,
    LogIndex,
    NodeId,
    PayerTransfer,
    ReopenAccount,
    Transfer,
    TransferId,
)
from tests.core.harness import ReplicaCluster
from tests.core.test_snapshots import elect, pay

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXTREMES = [0, 1, 2, 3, 7, 2**31, 2**53 - 2, MAX_COUNTER]
counter = st.one_of(st.sampled_from(EXTREMES), st.integers(0, MAX_COUNTER))
small = st.integers(0, 12)
epoch = st.one_of(small, counter).map(Epoch)
index = st.one_of(small, counter).map(LogIndex)
ts = st.builds(Timestamp, counter, counter)
ident = st.one_of(st.sampled_from(["a", "b", "bank", "n1"]), st.text(max_size=70))


def commands() -> st.SearchStrategy[Commands]:
    transfer = st.builds(Transfer, id=ident.map(TransferId), debit=ident.map(AccountId),
                         credit=ident.map(AccountId),
                         amount=st.integers(-2**62, 2**62).map(Cents), currency=ident,
                         flags=st.integers(0, 3))
    account = st.builds(CreateAccount, id=ident.map(AccountId), currency=ident,
                        allow_negative=st.booleans(),
                        credits_must_not_exceed_debits=st.booleans())
    payer = st.builds(PayerTransfer, transfer=transfer)
    chain = st.builds(Linked, commands=st.lists(st.one_of(transfer, payer), max_size=3
                                                ).map(tuple))
    closing = st.one_of(st.builds(CloseAccount, id=ident.map(AccountId)),
                        st.builds(ReopenAccount, id=ident.map(AccountId)))
    return st.builds(Commands, commands=st.lists(
        st.one_of(transfer, account, payer, chain, closing), max_size=4).map(tuple))


payload = st.one_of(commands(), st.builds(EpochStart, leader=ident.map(NodeId)))


@st.composite
def entries(draw: st.DrawFn, start: int | None = None) -> tuple[LogEntry, ...]:
    """Contiguous entries with non-decreasing epochs (what decoding lets through), or not."""
    first = draw(index) if start is None else start
    count = draw(st.integers(0, 6))
    epochs = sorted(draw(st.lists(epoch, min_size=count, max_size=count)))
    return tuple(LogEntry(index=LogIndex(min(first + i, MAX_COUNTER)), epoch=e,
                          payload=draw(payload), ts=draw(ts)) for i, e in enumerate(epochs))


def state() -> st.SearchStrategy[LedgerState]:
    row = st.builds(AccountRow, ident.map(AccountId), ident, st.integers(0, 3),
                    st.integers(-2**62, 2**62), st.integers(0, 2**62), st.integers(0, 2**62),
                    st.booleans(), index)
    transfer_row = st.builds(TransferRow, ident.map(TransferId), ident.map(AccountId),
                             ident.map(AccountId), st.integers(-2**62, 2**62).map(Cents), ident,
                             st.sampled_from(list(Status)), index, counter, counter,
                             st.integers(0, 3), st.integers(-2**62, 2**62))
    by_id = {"max_size": 3, "unique_by": lambda r: r.id}
    return st.builds(LedgerState, accounts=st.lists(row, **by_id).map(tuple),
                     transfers=st.lists(transfer_row, **by_id).map(tuple))


def built(kind: type[Message]) -> Callable[..., Message | None]:
    """Construct, or None where the struct's own checks refuse the fields (as decoding would)."""
    def build(**fields: object) -> Message | None:
        try:
            return kind(**fields)
        except ValueError:
            return None
    return build


def some(kind: type[Message], **fields: st.SearchStrategy[object]
         ) -> st.SearchStrategy[Message]:
    return st.builds(built(kind), **fields).filter(  # type: ignore[arg-type,return-value]
        lambda m: m is not None)


@st.composite
def append(draw: st.DrawFn) -> Append:
    prev = draw(index)
    batch = draw(entries(start=prev + 1))
    top = max([draw(epoch), *(e.epoch for e in batch)])
    low = min((e.epoch for e in batch), default=top)
    built_append = built(Append)(epoch=Epoch(top), prev_index=prev,
                                 prev_epoch=Epoch(min(draw(epoch), low)), entries=batch,
                                 commit=draw(index), seq=draw(counter))
    assume(built_append is not None)
    return built_append  # type: ignore[return-value]


@st.composite
def fetch_reply(draw: st.DrawFn) -> FetchReply:
    start = draw(st.integers(1, 2**53 - 10))
    batch = draw(entries(start=start))
    top = max([draw(epoch), *(e.epoch for e in batch)])
    reply = built(FetchReply)(epoch=Epoch(top), from_index=LogIndex(start), entries=batch,
                              last_index=LogIndex(start - 1 + len(batch) + draw(small)))
    assume(reply is not None)
    return reply  # type: ignore[return-value]


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prepare, epoch=epoch),
    some(Promise, epoch=epoch, last_index=index, last_epoch=epoch, log_start=index,
         last_ts=ts),
    st.builds(Fetch, epoch=epoch, from_index=index),
    fetch_reply(),
    append(),
    st.builds(AppendAck, epoch=epoch, match_index=index, seq=counter),
    st.builds(AppendNack, epoch=epoch, prev_index=index, conflict_epoch=epoch,
              conflict_index=index, seq=counter),
    st.builds(Refused, epoch=epoch, promised_epoch=epoch,
              reason=st.sampled_from(list(RefusalReason))),
    st.builds(lambda state, **fields: built(SnapshotChunk)(
        accounts=tuple(sorted(state.accounts, key=lambda a: a.id)),
        transfers=tuple(sorted(state.transfers, key=lambda t: t.id)), **fields),
        state(), epoch=epoch, index=index, last_epoch=epoch, last_ts=ts, stream=small, seq=small,
        last=st.booleans(), account_total=small, transfer_total=small).filter(
        lambda m: m is not None),
    st.builds(SnapshotAck, epoch=epoch, index=index, stream=small, next_seq=small),
    st.builds(ClockProbe, epoch=epoch, sent_ms=counter),
    st.builds(ClockEcho, epoch=epoch, probe_ms=counter, echo_ms=counter),
)


def valid(message: Message) -> bool:
    """Whether it survives an encode/decode round trip (the only way a peer's bytes arrive)."""
    try:
        decode_frame(encode(Frame(version=PROTOCOL_VERSION, messages=(message,))))
    except msgspec.ValidationError:
        return False
    return True


def cluster_in_every_role() -> ReplicaCluster:
    """n1 leads epoch 1, n2 follows; n3 was granted epoch 2 and is recovering."""
    cluster = ReplicaCluster()
    elect(cluster)
    pay(cluster, "n1", 3)
    cluster.stabilize()
    cluster.isolate("n3")
    cluster.grant("n3", 2)
    cluster.network.clear()
    return cluster


def well_formed(replica: Replica) -> None:
    log = replica.log
    assert log.start <= replica.applied_index <= replica.commit_index <= log.last_index
    epochs = [log.epoch_at(i) for i in range(log.start, log.last_index + 1)]
    assert all(e is not None for e in epochs)
    assert epochs == sorted(epochs)  # type: ignore[type-var]
    assert replica.promised_epoch >= replica.log.last_epoch


def feed(cluster: ReplicaCluster, sender: str, message: Message, wall_ms: int | None,
         hlc: Timestamp | None) -> None:
    for target in ("n1", "n2", "n3"):
        if target == sender:
            continue
        before = cluster[target].promised_epoch
        cluster.step(target, MessageReceived(sender=NodeId(sender), message=message, hlc=hlc,
                                             wall_ms=wall_ms))
        well_formed(cluster[target])
        assert cluster[target].promised_epoch >= before


@FUZZ
@given(st.lists(messages, min_size=1, max_size=4), st.sampled_from(["n1", "n2", "n3", "x"]),
       st.one_of(st.none(), counter), st.one_of(st.none(), ts))
def test_decodable_messages_never_break_a_replica(batch: list[Message], sender: str,
                                                  wall_ms: int | None,
                                                  hlc: Timestamp | None) -> None:
    cluster = cluster_in_every_role()
    for message in batch:
        if valid(message):
            feed(cluster, sender, message, wall_ms, hlc)
    cluster.stabilize(ticks=3)  # and the honest protocol carries on without raising
    for node in ("n1", "n2", "n3"):
        well_formed(cluster[node])


@FUZZ
@given(st.binary(max_size=512))
def test_raw_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except msgspec.DecodeError:
        return
    cluster = cluster_in_every_role()
    for message in frame.messages:
        feed(cluster, "n3", message, frame.wall_ms, frame.hlc)


@FUZZ
@given(st.lists(messages, min_size=1, max_size=3).filter(lambda b: all(map(valid, b))),
       st.data())
def test_mutated_valid_frames_decode_or_fail_cleanly(batch: list[Message],
                                                     data: st.DataObject) -> None:
    raw = bytearray(encode(Frame(version=PROTOCOL_VERSION, messages=tuple(batch))))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        frame = decode_frame(bytes(raw))
    except msgspec.DecodeError:
        return
    cluster = cluster_in_every_role()
    for message in frame.messages:
        feed(cluster, "n2", message, frame.wall_ms, frame.hlc)


def test_out_of_range_values_are_refused_at_decoding() -> None:
    too_big = msgspec.msgpack.encode({"version": PROTOCOL_VERSION, "messages": [
        {"type": "append", "epoch": 2**63, "prev_index": 0, "prev_epoch": 0, "entries": [],
         "commit": 0, "seq": 0}]})
    for data in (too_big, too_big.replace(b"append", b"prepare")):
        try:
            decode_frame(data)
        except msgspec.ValidationError:
            continue
        raise AssertionError("an epoch of 2^63 decoded")


def test_enormous_and_empty_batches_are_handled() -> None:
    """A frame of 2 000 messages, an Append of 5 000 entries, empty ones: decoded, handled."""
    cluster = cluster_in_every_role()
    base = cluster["n2"].log.last_index
    huge = tuple(LogEntry(index=LogIndex(base + 1 + i), epoch=Epoch(1), ts=Timestamp(i, 0),
                          payload=Commands(commands=())) for i in range(5_000))
    append_all = Append(epoch=Epoch(1), prev_index=LogIndex(base), prev_epoch=Epoch(1),
                        entries=huge, commit=LogIndex(0), seq=1)
    probes = tuple(ClockProbe(epoch=Epoch(1), sent_ms=i) for i in range(2_000))
    empty = Append(epoch=Epoch(1), prev_index=LogIndex(0), prev_epoch=Epoch(0), entries=(),
                   commit=LogIndex(0), seq=2)
    for messages in ((append_all,), probes, (empty,), ()):
        frame = decode_frame(encode(Frame(version=PROTOCOL_VERSION, messages=messages)))
        for message in frame.messages:
            feed(cluster, "n1", message, None, None)
    well_formed(cluster["n2"])
