"""Linked chains, account limits, closing and balancing through the client API and a real
driver: what a client sends and what it is told."""

from __future__ import annotations

import pytest
import trio

from quorapay.api import schema as api
from quorapay.node.client_api import ClientApi
from tests.node.test_client_api import PAYER
from tests.node.test_driver import ask, served

__all__ = ["served"]  # the fixture


async def opened(server: ClientApi) -> None:
    created = await ask(server, api.CreateAccounts(accounts=[
        api.AccountSpec(id="bank", allow_negative=True), api.AccountSpec(id="alice"),
        api.AccountSpec(id="bob"),
        api.AccountSpec(id="card", flags=[api.CREDITS_MUST_NOT_EXCEED_DEBITS])]))
    assert [r.status for r in created.results or []] == ["ok"] * 4
    paid = await ask(server, api.SubmitTransfers(transfers=[
        api.TransferSpec(id="d", debit="bank", credit="alice", amount=1000)]))
    assert paid.results is not None and paid.results[0].status == "ok"


async def statuses(server: ClientApi, *specs: api.TransferSpec) -> list[str]:
    response = await ask(server, api.SubmitTransfers(transfers=list(specs)))
    assert response.error is None, response.error
    return [r.status for r in response.results or []]


async def test_linked_transfers_apply_all_or_nothing(served) -> None:
    server, _ = served
    await opened(server)
    assert await statuses(
        server, api.TransferSpec(id="a1", debit="alice", credit="bob", amount=600, linked=True),
        api.TransferSpec(id="a2", debit="alice", credit="bob", amount=600),
        api.TransferSpec(id="solo", debit="alice", credit="bob", amount=1)) == [
        "linked_event_failed", "insufficient_funds", "ok"]
    balances = await ask(server, api.GetBalances(accounts=["alice", "bob"]))
    assert [b.balance for b in balances.balances or []] == [999, 1]
    assert await statuses(
        server, api.TransferSpec(id="b1", debit="alice", credit="bob", amount=600, linked=True),
        api.TransferSpec(id="b2", debit="bob", credit="alice", amount=100)) == ["ok", "ok"]


async def test_a_request_ending_inside_a_chain_refuses_that_chain_only(served) -> None:
    server, _ = served
    await opened(server)
    assert await statuses(
        server, api.TransferSpec(id="ok1", debit="alice", credit="bob", amount=5),
        api.TransferSpec(id="o1", debit="alice", credit="bob", amount=5, linked=True),
        api.TransferSpec(id="o2", debit="alice", credit="bob", amount=5, linked=True)) == [
        "ok", "linked_chain_open", "linked_chain_open"]
    found = await ask(server, api.GetTransfers(ids=["o1", "o2"]))
    assert found.transfers == []  # nothing recorded: the ids are still free


async def test_a_chain_with_an_invalid_member_is_answered_without_the_log(served) -> None:
    server, _ = served
    await opened(server)
    assert await statuses(
        server, api.TransferSpec(id="i1", debit="alice", credit="bob", amount=5, linked=True),
        api.TransferSpec(id="i2", debit="alice", credit="alice", amount=5)) == [
        "linked_event_failed", "invalid"]


async def test_limits_balancing_and_closing(served) -> None:
    server, _ = served
    await opened(server)
    assert await statuses(
        server, api.TransferSpec(id="c1", debit="bank", credit="card", amount=1)) == [
        "exceeds_debits"]
    swept = await ask(server, api.SubmitTransfers(transfers=[api.TransferSpec(
        id="s1", debit="alice", credit="bob", amount=10**6, flags=[api.BALANCING_DEBIT])]))
    assert swept.results is not None and swept.results[0].moved == 1000
    record = await ask(server, api.GetTransfers(ids=["s1"]))
    assert record.transfers is not None and record.transfers[0].moved == 1000
    assert record.transfers[0].flags == [api.BALANCING_DEBIT]
    closed = await ask(server, api.CloseAccounts(accounts=["bob", "nobody"]))
    assert [r.status for r in closed.results or []] == ["ok", "account_not_found"]
    assert await statuses(
        server, api.TransferSpec(id="x1", debit="bank", credit="bob", amount=1)) == [
        "account_closed"]
    balances = await ask(server, api.GetBalances(accounts=["bob", "card"]))
    assert balances.balances is not None
    assert balances.balances[0].closed and balances.balances[1].flags == [
        api.CREDITS_MUST_NOT_EXCEED_DEBITS] and balances.balances[1].allow_negative
    await ask(server, api.ReopenAccounts(accounts=["bob"]))
    assert await statuses(
        server, api.TransferSpec(id="x2", debit="bank", credit="bob", amount=1)) == ["ok"]


@pytest.mark.parametrize("raw", [
    '{"op": "create_accounts", "accounts": [{"id": "a", "flags": ["no_such_flag"]}]}',
    '{"op": "create_accounts", "accounts": [{"id": "a", "allow_negative": true, '
    '"flags": ["debits_must_not_exceed_credits"]}]}',
    '{"op": "submit_transfers", "transfers": [{"id": "t", "debit": "a", "credit": "b", '
    '"amount": 1, "flags": ["pending_forever"]}]}',
])
async def test_unknown_or_contradictory_flags_are_malformed_requests(served, raw: str) -> None:
    server, _ = served
    response = await ask(server, raw)
    assert response.error is not None
    assert response.error.code is api.ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("raw", [
    '{"op": "close_accounts", "req": 6, "accounts": ["alice"]}',
    '{"op": "reopen_accounts", "req": 6, "accounts": ["alice"]}',
    '{"op": "create_accounts", "req": 6, "accounts": [{"id": "mint", "flags": []}]}',
])
async def test_a_payer_may_not_close_accounts_or_open_issuers_by_flags(served, raw: str) -> None:
    server, _ = served
    with trio.fail_after(10):
        response = await server.handle(raw, PAYER)
    assert response.error is not None and response.error.code is api.ErrorCode.FORBIDDEN


async def test_two_phase_transfers_reserve_then_post_or_void(served) -> None:
    server, _ = served
    await opened(server)
    assert await statuses(
        server, api.TransferSpec(id="r1", debit="alice", credit="bob", amount=600,
                                 flags=[api.PENDING], timeout_ms=60_000),
        api.TransferSpec(id="r2", debit="alice", credit="bob", amount=300, flags=[api.PENDING]),
        api.TransferSpec(id="x", debit="alice", credit="bob", amount=101)) == [
        "ok", "ok", "insufficient_funds"]
    held = await ask(server, api.GetBalances(accounts=["alice", "bob"]))
    assert [(b.balance, b.debits_pending, b.credits_pending) for b in held.balances or []] == [
        (1000, 900, 0), (0, 0, 900)]
    posted = await ask(server, api.SubmitTransfers(transfers=[
        api.TransferSpec(id="p1", pending_id="r1", amount=250, flags=[api.POST_PENDING]),
        api.TransferSpec(id="v1", pending_id="r2", flags=[api.VOID_PENDING]),
        api.TransferSpec(id="p2", pending_id="r1", flags=[api.POST_PENDING])]))
    assert [(r.status, r.moved) for r in posted.results or []] == [
        ("ok", 250), ("ok", 0), ("pending_transfer_already_posted", 0)]
    after = await ask(server, api.GetBalances(accounts=["alice", "bob"]))
    assert [(b.balance, b.debits_pending) for b in after.balances or []] == [(750, 0), (250, 0)]
    found = await ask(server, api.GetTransfers(ids=["r1", "p1", "r1#resolution"]))
    records = {t.id: t for t in found.transfers or []}
    assert records["r1"].flags == [api.PENDING] and records["r1"].timeout_ms == 60_000
    assert (records["p1"].pending_id, records["p1"].debit, records["p1"].moved) == (
        "r1", "alice", 250)
    assert records["r1#resolution"].status == "posted"


async def test_a_transfer_without_accounts_or_amount_is_malformed_unless_it_resolves(
        served) -> None:
    server, _ = served
    response = await ask(server, '{"op": "submit_transfers", "transfers": '
                                 '[{"id": "t", "debit": "a", "amount": 5}]}')
    assert response.error is not None
    assert response.error.code is api.ErrorCode.INVALID_REQUEST
