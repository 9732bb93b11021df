"""A real driver (one-node replica, SQLite) behind the client API: requests that used to kill a
node now fail alone, and the node keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from quorapay.api import schema as api
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.core.inputs import CompactionRequested, LeadershipGranted
from quorapay.core.node_state import NodeState
from quorapay.core.replica import Replica
from quorapay.core.types import Epoch, LogIndex
from quorapay.node.client_api import ClientApi
from quorapay.node.loop import Driver, Failure, LocalQuery, Reply
from quorapay.node.storage import Store
from quorapay.security.identity import Principal, Role

OPERATOR = Principal(cluster="quorapay-local", role=Role.OPERATOR, name="operator")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ClientApi, trio.MemorySendChannel]]:
    path = tmp_path / "cluster.toml"
    path.write_text(render(default_cluster(nodes=1)))
    config: ClusterConfig = load_config(path)
    me = config.nodes[0]
    store = Store(me.data_dir / "node.db", cluster=config.name, node_id=me.id)
    replica = Replica(node_id=me.id, members=config.node_ids, timing=config.timing.core())
    driver = Driver(NodeState(replica, store.load().ledger), store,
                    send=lambda _: None, relinquish=lambda *_: None,
                    wall_clock=lambda: FROZEN_WALL_MS)  # a stopped clock: only HLC counts
    inputs_send, inputs = trio.open_memory_channel(100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run, inputs)
        await inputs_send.send(LeadershipGranted(epoch=Epoch(1)))
        with trio.fail_after(10):
            while True:  # each LocalQuery is answered after the previous batch drained
                reply: Reply = Reply()
                await inputs_send.send(LocalQuery(query=lambda d: d.replica.serving, reply=reply))
                if await reply.wait():
                    break
        yield ClientApi(config, inputs_send, status=lambda: None,  # type: ignore[arg-type,return-value]
                        zk_leader=lambda: None), inputs_send
        nursery.cancel_scope.cancel()
    store.close()


FROZEN_WALL_MS = 1_800_000_000_000  # 2027-01-15T08:00:00.000Z


async def ask(server: ClientApi, request: api.Request | str) -> api.Response:
    with trio.fail_after(10):
        return await server.handle(request if isinstance(request, str) else api.encode(request),
                                   OPERATOR)


async def test_writes_and_reads_go_through_the_driver(served) -> None:
    server, _ = served
    created = await ask(server, api.CreateAccounts(accounts=[
        api.AccountSpec(id="bank", allow_negative=True), api.AccountSpec(id="alice")]))
    assert [r.status for r in created.results or []] == ["ok", "ok"]
    paid = await ask(server, api.SubmitTransfers(transfers=[
        api.TransferSpec(id="t1", debit="bank", credit="alice", amount=250)]))
    assert paid.results is not None and paid.results[0].status == "ok"
    balances = await ask(server, api.GetBalances(accounts=["alice"]))
    assert balances.balances is not None and balances.balances[0].balance == 250


async def test_a_transfer_reports_its_index_and_timestamp_and_keeps_them_on_retry(
        served) -> None:
    server, _ = served
    await ask(server, api.CreateAccounts(accounts=[
        api.AccountSpec(id="bank", allow_negative=True), api.AccountSpec(id="alice")]))
    spec = api.TransferSpec(id="t1", debit="bank", credit="alice", amount=250)
    first = await ask(server, api.SubmitTransfers(transfers=[spec]))
    assert first.timestamp == "2027-01-15T08:00:00.000Z" and first.results is not None
    assert (first.results[0].timestamp, first.results[0].logical) == (
        first.timestamp, first.logical)
    again = await ask(server, api.SubmitTransfers(transfers=[spec]))  # a retry: same outcome
    assert again.results is not None and again.index is not None and first.index is not None
    assert again.index > first.index and (again.logical or 0) > (first.logical or 0)
    assert (again.results[0].index, again.results[0].logical) == (
        first.results[0].index, first.results[0].logical)
    digest = await ask(server, api.Digest())
    assert digest.digest is not None and digest.digest.unordered_at is None
    record = await ask(server, api.GetTransfers(ids=["t1"]))
    assert record.transfers is not None
    assert (record.transfers[0].timestamp, record.transfers[0].logical) == (
        first.timestamp, first.logical)


@pytest.mark.parametrize("upto", [-1, 999_999])
async def test_a_digest_beyond_the_log_is_invalid_and_the_node_keeps_serving(
        served, upto: int) -> None:
    server, _ = served
    response = await ask(server, api.Digest(upto=upto))
    assert response.error is not None and response.error.code is api.ErrorCode.INVALID_REQUEST
    assert (await ask(server, api.Barrier())).index is not None


async def test_deeply_nested_json_is_invalid_and_the_node_keeps_serving(served) -> None:
    server, _ = served
    response = await ask(server, '{"op": "x", "y": ' + "[" * 5000 + "]" * 5000 + "}")
    assert response.error is not None and response.error.code is api.ErrorCode.INVALID_REQUEST
    assert (await ask(server, api.Barrier())).index is not None


async def test_a_query_that_raises_fails_alone(served) -> None:
    server, inputs = served
    reply: Reply = Reply()
    await inputs.send(LocalQuery(query=lambda driver: 1 / 0, reply=reply))
    with trio.fail_after(10):
        failure = await reply.wait()
    assert isinstance(failure, Failure) and failure.code is api.ErrorCode.INTERNAL
    assert (await ask(server, api.Barrier())).index is not None


async def test_after_compaction_digests_cover_the_held_log_and_old_entries_are_refused(
        served) -> None:
    server, inputs = served
    for i in range(4):
        await ask(server, api.CreateAccounts(accounts=[api.AccountSpec(id=f"a{i}")]))
    await inputs.send(CompactionRequested(upto=LogIndex(3)))
    whole = await ask(server, api.Digest())
    assert whole.digest is not None and whole.digest.log_start == 3
    assert whole.digest.after == 3 and whole.digest.state_digest is None  # no replay from 1
    assert whole.digest.stored_state_digest is not None and whole.digest.totals == {"USD": 0}
    for refused in (api.Entries(first=1, last=5), api.EntryDigests(first=3, last=5),
                    api.Digest(after=0)):
        response = await ask(server, refused)
        assert response.error is not None and response.error.code is api.ErrorCode.INVALID_REQUEST
    held = await ask(server, api.Entries(first=4, last=5))
    assert [e.index for e in held.entries or []] == [4, 5]
