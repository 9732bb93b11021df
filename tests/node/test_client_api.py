"""Malformed client requests get INVALID_REQUEST, and requests a role may not make get FORBIDDEN;
neither reaches the driver."""

from __future__ import annotations

import pytest
import trio

from quorapay.api import schema as api
from quorapay.config import ClusterConfig, default_cluster, load_config, render
from quorapay.node.client_api import ClientApi
from quorapay.security.identity import Principal, Role

OPERATOR = Principal(cluster="quorapay-local", role=Role.OPERATOR, name="operator")
PAYER = Principal(cluster="quorapay-local", role=Role.PAYER, name="payer")


@pytest.fixture
def config(tmp_path) -> ClusterConfig:
    path = tmp_path / "cluster.toml"
    path.write_text(render(default_cluster()))
    return load_config(path)


@pytest.mark.parametrize("raw", [
    "not json",
    "[1, 2]",
    '{"op": "pay_everyone"}',
    '{"op": "submit_transfers", "req": 3}',
    '{"op": "submit_transfers", "req": 3, "transfers": []}',
    '{"op": "submit_transfers", "req": 3, "transfers": [{"id": "t", "debit": "a"}]}',
    '{"op": "submit_transfers", "req": 3, "transfers": [{"id": "t", "debit": "a", '
    '"credit": "b", "amount": "5"}]}',
    '{"op": "get_balances", "req": 3, "accounts": ["a"], "extra": 1}',
    '{"op": "entry_digests", "req": 3, "first": 5, "last": 1}',
])
async def test_malformed_requests_are_rejected_without_touching_the_driver(
        config: ClusterConfig, raw: str) -> None:
    send, receive = trio.open_memory_channel(10)
    server = ClientApi(config, send, status=lambda: None, zk_leader=lambda: None)  # type: ignore[arg-type,return-value]
    response = await server.handle(raw, OPERATOR)
    assert response.error is not None
    assert response.error.code is api.ErrorCode.INVALID_REQUEST
    assert not response.error.retryable
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


async def test_too_many_items_is_invalid(config: ClusterConfig) -> None:
    send, _ = trio.open_memory_channel(10)
    server = ClientApi(config, send, status=lambda: None, zk_leader=lambda: None)  # type: ignore[arg-type,return-value]
    transfers = [{"id": f"t{i}", "debit": "a", "credit": "b", "amount": 1} for i in range(1001)]
    response = await server.handle(api.encode(api.SubmitTransfers(transfers=[
        api.TransferSpec(**t) for t in transfers], req=4)), OPERATOR)
    assert response.req == 4
    assert response.error is not None and "1 to 1000 items" in response.error.message


async def test_invalid_commands_are_answered_without_a_log_entry(config: ClusterConfig) -> None:
    send, receive = trio.open_memory_channel(10)
    server = ClientApi(config, send, status=lambda: None, zk_leader=lambda: None)  # type: ignore[arg-type,return-value]
    response = await server.handle('{"op": "submit_transfers", "req": 5, "transfers": ['
                                   '{"id": "t 1", "debit": "a", "credit": "b", "amount": 5},'
                                   '{"id": "t2", "debit": "a", "credit": "a", "amount": 5},'
                                   '{"id": "t3", "debit": "a", "credit": "b", "amount": 0}]}',
                                   PAYER)
    assert [r.status for r in response.results or []] == ["invalid"] * 3
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


@pytest.mark.parametrize("raw", [
    '{"op": "digest", "req": 6}',
    '{"op": "entries", "req": 6, "first": 1, "last": 5}',
    '{"op": "entry_digests", "req": 6, "first": 1, "last": 5}',
    '{"op": "local_transfers", "req": 6, "ids": ["t"]}',
    '{"op": "barrier", "req": 6}',
    '{"op": "status", "req": 6}',
    '{"op": "switchover", "req": 6, "to": "n2"}',
    '{"op": "create_accounts", "req": 6, "accounts": [{"id": "mint", "allow_negative": true}]}',
])
async def test_a_payer_may_not_call_operator_operations_or_open_issuers(
        config: ClusterConfig, raw: str) -> None:
    send, receive = trio.open_memory_channel(10)
    server = ClientApi(config, send, status=lambda: None, zk_leader=lambda: None)  # type: ignore[arg-type,return-value]
    response = await server.handle(raw, PAYER)
    assert response.req == 6
    assert response.error is not None and response.error.code is api.ErrorCode.FORBIDDEN
    assert not response.error.retryable and "operator role" in response.error.message
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


async def test_a_payer_may_open_ordinary_accounts_and_pay(config: ClusterConfig) -> None:
    send, receive = trio.open_memory_channel(10)
    server = ClientApi(config, send, status=lambda: None, zk_leader=lambda: None)  # type: ignore[arg-type,return-value]
    with trio.move_on_after(0.2):  # reaches the driver (which is not there to answer)
        await server.handle('{"op": "create_accounts", "req": 7, "accounts": [{"id": "a"}]}',
                            PAYER)
    assert receive.receive_nowait() is not None
