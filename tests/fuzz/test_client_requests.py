"""Property-based fuzzing of what a client reaches: the request decoder with the client API and a
real driver (a one-node replica on SQLite) behind it, for a payer and an operator. Raw text,
arbitrary JSON, and requests of every op with extreme values get an answer -- an outcome or a
clean error, never INTERNAL -- and the node keeps serving, with money conserved."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorapay.api import schema as api
from quorapay.core.inputs import LeadershipGranted
from quorapay.core.node_state import NodeState
from quorapay.core.replica import Replica
from quorapay.core.types import Epoch
from quorapay.node.client_api import ClientApi
from quorapay.node.loop import Driver, LocalQuery, Reply
from quorapay.node.storage import Store
from quorapay.security.identity import Principal, Role
from tests.secured import secured_cluster

PAYER = Principal(cluster="quorapay-test", role=Role.PAYER, name="payer")
OPERATOR = Principal(cluster="quorapay-test", role=Role.OPERATOR, name="operator")
CLEAN = {api.ErrorCode.INVALID_REQUEST, api.ErrorCode.FORBIDDEN}
OPS = ["create_accounts", "submit_transfers", "barrier", "get_balances", "get_transfers",
       "status", "digest", "entry_digests", "local_transfers", "entries", "switchover",
       "nonsense", ""]

extreme_int = st.one_of(st.sampled_from([0, 1, -1, 2**31, 2**53 - 1, 2**53, 2**63, -2**63,
                                         2**64, 10**30]), st.integers())
weird_text = st.one_of(st.sampled_from(["a", "bank", "", " ", "a" * 65, "é", "\x00", "\ud7ff",
                                        "USD", "usd", "ZZZZZZZZZZZZZ"]), st.text(max_size=80))
scalar = st.one_of(st.none(), st.booleans(), extreme_int, st.floats(allow_nan=False),
                   weird_text)
json_value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(weird_text, inner, max_size=4)), max_leaves=12)
account = st.fixed_dictionaries({"id": weird_text}, optional={
    "currency": weird_text, "allow_negative": st.one_of(st.booleans(), scalar)})
transfer = st.fixed_dictionaries(
    {"id": weird_text, "debit": weird_text, "credit": weird_text, "amount": extreme_int},
    optional={"currency": weird_text, "extra": scalar})
structured = st.fixed_dictionaries({"op": st.sampled_from(OPS)}, optional={
    "req": extreme_int, "accounts": st.one_of(st.lists(account, max_size=3),
                                             st.lists(weird_text, max_size=3), scalar),
    "transfers": st.one_of(st.lists(transfer, max_size=3), scalar),
    "ids": st.one_of(st.lists(weird_text, max_size=3), scalar),
    "first": extreme_int, "last": extreme_int, "upto": extreme_int, "after": extreme_int,
    "to": st.one_of(weird_text, st.sampled_from(["n1", "n2"]), scalar)})
request_text = st.one_of(st.text(max_size=200), json_value.map(json.dumps),
                         structured.map(json.dumps))


@asynccontextmanager
async def serving() -> AsyncIterator[ClientApi]:
    with tempfile.TemporaryDirectory() as folder:
        cluster = secured_cluster(Path(folder), nodes=1,
                                  timing={"request_timeout": 2.0})
        me = cluster.nodes[0]
        store = Store(me.data_dir / "node.db", cluster=cluster.name, node_id=me.id)
        replica = Replica(node_id=me.id, members=cluster.node_ids, timing=cluster.timing.core())
        driver = Driver(NodeState(replica, store.load().ledger), store, send=lambda _: None,
                        relinquish=lambda *_: None, wall_clock=lambda: 1_800_000_000_000)
        inputs_send, inputs = trio.open_memory_channel[Any](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run, inputs)
            await inputs_send.send(LeadershipGranted(epoch=Epoch(1)))
            with trio.fail_after(10):
                while True:
                    reply: Reply[Any] = Reply()
                    await inputs_send.send(LocalQuery(query=lambda d: d.replica.serving,
                                                      reply=reply))
                    if await reply.wait():
                        break
            yield ClientApi(cluster, inputs_send, status=lambda: None,  # type: ignore[arg-type,return-value]
                            zk_leader=lambda: None)
            nursery.cancel_scope.cancel()
        store.close()


async def answer(server: ClientApi, text: str, principal: Principal) -> api.Response:
    with trio.fail_after(10):
        response = await server.handle(text, principal)
    api.decode_response(api.encode(response))  # what goes on the wire is valid
    return response


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(request_text, st.sampled_from([PAYER, OPERATOR])), min_size=1,
                max_size=8))
async def test_any_request_gets_a_clean_answer_and_the_node_keeps_serving(
        requests: list[tuple[str, Principal]]) -> None:
    async with serving() as server:
        opened = await answer(server, json.dumps({"op": "create_accounts", "accounts": [
            {"id": "bank", "allow_negative": True}, {"id": "alice"}, {"id": "bob"}]}),
            OPERATOR)
        assert opened.error is None
        for text, principal in requests:
            response = await answer(server, text, principal)
            if response.error is not None:
                assert response.error.code in CLEAN, response.error
                if response.error.code is api.ErrorCode.FORBIDDEN:
                    assert principal is PAYER
        funded = await answer(server, json.dumps({"op": "submit_transfers", "transfers": [
            {"id": "after-fuzz-1", "debit": "bank", "credit": "alice", "amount": 5}]}),
            OPERATOR)
        paid = await answer(server, json.dumps({"op": "submit_transfers", "transfers": [
            {"id": "after-fuzz-2", "debit": "alice", "credit": "bob", "amount": 5}]}), PAYER)
        for outcome in (funded, paid):
            assert outcome.error is None and outcome.results is not None
            assert outcome.results[0].status == "ok"
        digest = await answer(server, json.dumps({"op": "digest"}), OPERATOR)
        assert digest.digest is not None and digest.digest.totals is not None
        assert all(total == 0 for total in digest.digest.totals.values())
