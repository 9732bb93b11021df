"""The client API server: JSON requests over websockets (TLS), answered through the driver.

Every node serves it. A connection must present a client certificate of this cluster (`payer`
or `operator` role, see `quorapay.security.identity`): without one the upgrade is refused with
401 and a reason. Each request is dispatched with the connection's principal; an operation its
role may not call gets FORBIDDEN and changes nothing. Writes and linearizable reads go to the
driver and wait for their outcome at most `request_timeout`; past that the answer is TIMEOUT
("outcome unknown: retry with the same ids"). Requests on one connection may be pipelined (at
most PIPELINE_DEPTH in flight); responses carry the request's `req`. A malformed request gets
INVALID_REQUEST and changes nothing. Heavy operator queries (digest, entry digests) take their
data between driver batches and compute in a worker thread, one at a time, so that they never
hold up the event loop.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed

from quorapay.api import schema as api
from quorapay.api.timestamps import iso
from quorapay.config import ClusterConfig
from quorapay.core.digest import LogDigests, RangeFacts, entry_digest, range_facts, replay
from quorapay.core.ledger import Ledger, validate
from quorapay.core.types import (
    AccountId,
    CloseAccount,
    Command,
    NodeId,
    ReopenAccount,
    TransferId,
)
from quorapay.node import client_commands as commands
from quorapay.node.loop import (
    ClientRead,
    ClientSwitchover,
    ClientWrite,
    Committed,
    Driver,
    DriverInput,
    Failure,
    HandedOver,
    LocalQuery,
    ReadValue,
    Reply,
)
from quorapay.security.identity import Principal, Role, may_call, role_needed
from quorapay.transport.limits import CLIENT_LIMITS
from quorapay.transport.server import Link, Refusal, WebsocketServer

log = logging.getLogger(__name__)
PIPELINE_DEPTH = 64  # requests in flight per connection
MAX_REQUEST_BYTES = 4 * 2**20
MAX_DIGEST_RANGE = 10_000


class ClientApi:
    def __init__(self, cluster: ClusterConfig, inputs: trio.MemorySendChannel[DriverInput],
                 status: Callable[[], api.NodeStatus], zk_leader: Callable[[], NodeId | None],
                 *, tls: ssl.SSLContext | None = None) -> None:
        self._cluster = cluster
        self._inputs = inputs
        self._status = status
        self._zk_leader = zk_leader
        self._timeout = cluster.timing.request_timeout
        self._heavy = trio.CapacityLimiter(1)  # digest-like queries: one at a time, in a thread
        self._log_digests = LogDigests()  # touched only under self._heavy
        self._insecure = Principal(cluster=cluster.name, role=Role.OPERATOR,
                                   name="insecure-benchmark") if tls is None else None
        self.server = WebsocketServer(self._connection, what="client", cluster=cluster.name,
                                      tls=tls, authorize=self._authorize,
                                      limits=CLIENT_LIMITS, max_message_size=MAX_REQUEST_BYTES)

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]]
                    = trio.TASK_STATUS_IGNORED) -> None:
        await self.server.serve(listeners, task_status=task_status)

    def _authorize(self, principal: Principal | None) -> Refusal | None:
        if self._insecure is not None:
            return None
        if principal is None:
            return Refusal(401, "a client certificate of this cluster is required (the CLI and "
                           "quorapay.client take one from the secrets dir; see docs/05-security)")
        if principal.role not in (Role.PAYER, Role.OPERATOR):
            return Refusal(403, f"{principal} may not use the client API")
        return None

    async def _connection(self, link: Link) -> None:
        principal = link.principal or self._insecure
        assert principal is not None  # authorized
        in_flight = trio.Semaphore(PIPELINE_DEPTH)
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    data = await link.receive()
                except ConnectionClosed:
                    break
                await in_flight.acquire()  # two equal requests are two requests
                nursery.start_soon(self._respond, link, principal, data, in_flight)

    async def _respond(self, link: Link, principal: Principal, data: str | bytes,
                       in_flight: trio.Semaphore) -> None:
        try:
            try:
                response = await self.handle(data, principal)
            except Exception:  # the outermost loop of a request: a bug here must not kill the node
                log.exception("internal error answering a client request")
                response = api.Response(req=_req_of(data), error=api.error(
                    api.ErrorCode.INTERNAL, "internal error; the node logged it"))
            await link.send(api.encode(response).decode())
        except ConnectionClosed:
            pass
        finally:
            in_flight.release()

    async def handle(self, data: str | bytes, principal: Principal) -> api.Response:
        """Answer one raw request from `principal`. Never raises for bad input."""
        try:
            request = api.decode_request(data)
        except msgspec.DecodeError as exc:
            return api.Response(req=_req_of(data), error=api.error(
                api.ErrorCode.INVALID_REQUEST, f"malformed request: {exc}"))
        refusal = _forbidden(request, principal)
        if refusal is not None:
            return api.Response(req=request.req,
                                error=api.error(api.ErrorCode.FORBIDDEN, refusal))
        try:
            return await self._dispatch(request, principal)
        except (_Invalid, commands.BadRequest) as exc:
            return api.Response(req=request.req,
                                error=api.error(api.ErrorCode.INVALID_REQUEST, str(exc)))

    async def _dispatch(self, request: api.Request, principal: Principal) -> api.Response:
        match request:
            case api.CreateAccounts(accounts=specs):
                return await self._write(request.req, [
                    commands.create_account(a) for a in _bounded(specs)])
            case api.SubmitTransfers(transfers=specs):
                # a payer's may not debit an issuer: the ledger decides it, from the log
                written, open_chain = commands.transfers(
                    _bounded(specs), payer=principal.role is not Role.OPERATOR)
                return await self._write(request.req, written, commands.chain_open(open_chain))
            case api.CloseAccounts(accounts=ids):
                return await self._write(request.req, [
                    CloseAccount(id=AccountId(i)) for i in _bounded(ids)])
            case api.ReopenAccounts(accounts=ids):
                return await self._write(request.req, [
                    ReopenAccount(id=AccountId(i)) for i in _bounded(ids)])
            case api.Barrier():
                return await self._write(request.req, [])
            case api.GetBalances(accounts=ids):
                _bounded(ids)
                return await self._read(request.req, lambda ledger: _balances(ledger, ids))
            case api.GetTransfers(ids=ids):
                _bounded(ids)
                return await self._read(request.req, lambda ledger: api.Response(
                    req=0, transfers=_transfers(ledger, ids)))
            case api.Status():
                return api.Response(req=request.req, status=self._status())
            case api.Digest(upto=upto, after=after, deep=deep):
                return await self._heavy_query(request.req, lambda d: _digest_inputs(
                    d, self._log_digests, upto, after, deep=deep))
            case api.EntryDigests(first=first, last=last):
                if not 1 <= first <= last or last - first >= MAX_DIGEST_RANGE:
                    raise _Invalid(f"need 1 <= first <= last, at most {MAX_DIGEST_RANGE} entries")
                return await self._heavy_query(
                    request.req, lambda d: _entry_digests_inputs(d, first, last))
            case api.Entries(first=first, last=last):
                if not 1 <= first <= last or last - first >= api.MAX_BATCH:
                    raise _Invalid(f"need 1 <= first <= last, at most {api.MAX_BATCH} entries")
                return await self._local(request.req, lambda d: _entries(d, first, last))
            case api.Switchover(to=to):
                if to is not None and to not in self._cluster.node_ids:
                    raise _Invalid(f"{to!r} is not a node of this cluster")
                return await self._switchover(request.req, NodeId(to) if to else None)
            case api.LocalTransfers(ids=ids):
                _bounded(ids)
                return await self._local(
                    request.req, lambda d: api.Response(req=0, transfers=_transfers(d.ledger, ids)))
        raise AssertionError(f"unhandled request {request!r}")

    # ------------------------------------------------------------------ the three paths

    async def _write(self, req: int, written: list[Command],
                     refused: Sequence[api.CommandResult] = ()) -> api.Response:
        """Log the commands valid on their face, and answer every one, in order (then the
        `refused` results of the request's end)."""
        problems = {i: validate(c) for i, c in enumerate(written)}
        valid = tuple(c for i, c in enumerate(written) if not problems[i])
        outcome: Committed | None = None
        if valid or not (written or refused):
            answer = await self._ask(ClientWrite(commands=valid, reply=Reply()))
            if isinstance(answer, Failure):
                return api.Response(req=req, error=self._error(answer))
            outcome = answer
        decided = iter(outcome.results if outcome is not None else [])
        results = [r for i, c in enumerate(written) for r in (
            commands.refused(c, problems[i]) if problems[i] else commands.results(next(decided)))]
        results += refused
        if outcome is None:
            return api.Response(req=req, results=results)
        return api.Response(req=req, results=results, index=outcome.index, epoch=outcome.epoch,
                            timestamp=iso(outcome.ts.wall_ms), logical=outcome.ts.logical)

    async def _read(self, req: int, query: Callable[[Ledger], api.Response]) -> api.Response:
        outcome = await self._ask(ClientRead(query=query, reply=Reply()))
        if isinstance(outcome, Failure):
            return api.Response(req=req, error=self._error(outcome))
        assert isinstance(outcome, ReadValue)
        response: api.Response = outcome.value
        return msgspec.structs.replace(response, req=req, index=outcome.index,
                                       epoch=outcome.epoch)

    async def _local(self, req: int, query: Callable[[Driver], api.Response]) -> api.Response:
        outcome = await self._ask(LocalQuery(query=query, reply=Reply()))
        if isinstance(outcome, Failure):
            return api.Response(req=req, error=self._error(outcome))
        response: api.Response = outcome
        return msgspec.structs.replace(response, req=req)

    async def _switchover(self, req: int, to: NodeId | None) -> api.Response:
        answer = await self._ask(ClientSwitchover(to=to, reply=Reply()))
        if isinstance(answer, Failure):
            return api.Response(req=req, error=self._error(answer))
        assert isinstance(answer, HandedOver)
        tick = self._cluster.timing.tick
        return api.Response(req=req, switchover=api.SwitchoverInfo(
            node=answer.node, to=answer.to, epoch=answer.epoch,
            caught_up_ms=round(answer.ticks * tick * 1000)))

    async def _heavy_query(self, req: int, capture: Callable[[Driver], api.Response | Heavy]
                           ) -> api.Response:
        """A query whose inputs are captured between driver batches (a consistent view, cheap:
        references to immutable entries, a copy of the ledger's rows) and computed in a worker
        thread, one at a time: whatever it costs, the event loop keeps serving. While one runs,
        another is answered UNAVAILABLE at once (never queued: queued work would outlive its
        callers' patience); a computation runs to its end, its slot held until then."""
        try:
            self._heavy.acquire_nowait()
        except trio.WouldBlock:
            return api.Response(req=req, error=api.error(api.ErrorCode.UNAVAILABLE, (
                "another digest-like query is being computed on this node; try again shortly")))
        try:
            captured = await self._ask(LocalQuery(query=capture, reply=Reply()))
            if isinstance(captured, Failure):
                return api.Response(req=req, error=self._error(captured))
            if not isinstance(captured, api.Response):
                captured = await trio.to_thread.run_sync(captured)  # not abandoned: see above
            if isinstance(captured, Computed):  # keep what it folded, between batches
                await self._ask(LocalQuery(query=captured.keep, reply=Reply()))
                captured = captured.response
            response: api.Response = msgspec.structs.replace(captured, req=req)
            return response
        finally:
            self._heavy.release()

    async def _ask(self, item: ClientWrite | ClientRead | ClientSwitchover | LocalQuery) -> Any:
        with trio.move_on_after(self._timeout):
            await self._inputs.send(item)
            return await item.reply.wait()
        item.reply.set(Failure(code=api.ErrorCode.TIMEOUT, message="timed out"))  # late = dropped
        return Failure(code=api.ErrorCode.TIMEOUT, message=(
            f"no outcome within {self._timeout:g}s: the outcome is unknown; "
            "retry with the same ids, it is safe"))

    def _error(self, failure: Failure) -> api.Error:
        leader = failure.leader or (self._zk_leader() if failure.code is
                                    api.ErrorCode.NOT_LEADER else None)
        hint = None
        if leader is not None and leader in self._cluster.node_ids:
            hint = api.LeaderHint(node=leader, url=self._cluster.client_url(
                self._cluster.node(leader)))
        return api.error(failure.code, failure.message, hint)


class _Invalid(Exception):
    """A request that decodes but breaks a limit."""


@dataclass(frozen=True, slots=True)
class Computed:
    """A heavy query's response, and what its computation leaves to keep in the driver."""

    response: api.Response
    then: Callable[[Driver], None]

    def keep(self, driver: Driver) -> api.Response:
        self.then(driver)
        return self.response


# computes a response from captured inputs, in a worker thread
Heavy = Callable[[], api.Response | Computed]


def _forbidden(request: api.Request, principal: Principal) -> str | None:
    """Why `principal` may not make this request, or None if it may."""
    op = type(request).__struct_config__.tag
    assert isinstance(op, str)
    if not may_call(principal, op):
        return (f"{principal} may not call {op!r}: it needs the {role_needed(op).value} role "
                "(see docs/05-security)")
    if isinstance(request, api.CreateAccounts) and principal.role is not Role.OPERATOR and any(
            _issuer(spec) for spec in request.accounts):
        return (f"{principal} may not open issuer accounts (allow_negative): they create "
                "money; it needs the operator role")
    return None


def _issuer(spec: api.AccountSpec) -> bool:
    """An account whose debits may exceed its credits: it creates money."""
    try:
        return commands.create_account(spec).allow_negative
    except commands.BadRequest:
        return False  # refused anyway, as a malformed request


def _bounded(specs: list[Any]) -> list[Any]:
    if not 1 <= len(specs) <= api.MAX_BATCH:
        raise _Invalid(f"a request carries 1 to {api.MAX_BATCH} items, not {len(specs)}")
    return specs


class _RequestNumber(msgspec.Struct):
    req: int = 0


def _req_of(data: str | bytes) -> int:
    """The `req` of a request that failed to decode, for the error response (0 if unknowable)."""
    try:
        return msgspec.json.decode(data, type=_RequestNumber).req  # skips every other field
    except Exception:  # any input at all: this only picks a number for an error reply
        return 0


def _balances(ledger: Ledger, ids: list[str]) -> api.Response:
    balances = []
    for account_id in ids:
        account = ledger.accounts.get(AccountId(account_id))
        if account is None:
            return api.Response(req=0, error=api.error(api.ErrorCode.INVALID_REQUEST,
                                                       f"account {account_id!r} not found"))
        balances.append(commands.balance(account))
    return api.Response(req=0, balances=balances)


def _transfers(ledger: Ledger, ids: list[str]) -> list[api.TransferRecord]:
    found = []
    records = ledger.find([TransferId(i) for i in ids])
    for transfer_id in ids:
        record = records.get(TransferId(transfer_id))
        if record is not None:
            found.append(commands.transfer_record(record))
    return found


def _digest_inputs(driver: Driver, digests: LogDigests, upto: int | None, after: int | None,
                   *, deep: bool) -> api.Response | Heavy:
    """Between batches: check the range and capture what the digest needs. Cheap unless `deep`:
    references to entries since the last check, the ledger's kept digest and totals."""
    applied = driver.applied_index
    start = driver.replica.log.start
    index = applied if upto is None else upto
    after = start if after is None else after
    if not start <= after <= index <= applied:
        return api.Response(req=0, error=api.error(
            api.ErrorCode.INVALID_REQUEST,
            f"need log start {start} <= after <= upto <= applied index {applied}"))
    log = driver.replica.log
    ranged = log.slice(after + 1, index) if deep else ()
    facts: Callable[[], RangeFacts] = partial(  # deep: hashed afresh, trusting nothing kept
        range_facts, log.ts_at(after), ranged) if deep else digests.plan(log, after, index)
    at_applied = index == applied
    fold = driver.ledger.fold() if at_applied else None  # the rows changed since the last
    totals = driver.ledger.totals() if at_applied else None
    whole = ranged if deep and start == 0 and after == 0 else None  # the log from entry 1
    recount = driver.ledger.recount() if deep and at_applied else None  # O(accounts) now
    node = driver.replica.node_id

    def compute() -> Computed:  # in a worker thread: touches only what was captured
        found = facts()
        replayed = replay(whole) if whole is not None else None
        response = api.Response(req=0, digest=api.DigestInfo(
            node=node, index=index, after=after, log_start=start, deep=deep,
            log_digest=found.log_digest,
            state_digest=replayed.digest() if replayed is not None else None,
            stored_state_digest=fold.compute() if fold is not None else None,
            recounted_state_digest=recount() if recount is not None else None,
            totals=replayed.recount_totals() if replayed is not None else totals,
            unordered_at=found.unordered_at))
        return Computed(response, lambda d: fold.merge(d.ledger) if fold is not None else None)
    return compute


def _compacted(driver: Driver, first: int) -> api.Response | None:
    """The error for asking entries from `first` if some were compacted away, else None."""
    start = driver.replica.log.start
    if first > start:
        return None
    return api.Response(req=0, error=api.error(
        api.ErrorCode.INVALID_REQUEST,
        f"entries up to {start} were compacted on node {driver.replica.node_id} "
        f"(storage.compact_every = 0 keeps the whole log)"))


def _entries(driver: Driver, first: int, last: int) -> api.Response:
    entries = driver.replica.log.slice(first, min(last, driver.applied_index))
    return _compacted(driver, first) or api.Response(req=0, entries=list(entries))


def _entry_digests_inputs(driver: Driver, first: int, last: int) -> api.Response | Heavy:
    entries = driver.replica.log.slice(first, min(last, driver.applied_index))
    return _compacted(driver, first) or (
        lambda: api.Response(req=0, entry_digests=[entry_digest(e) for e in entries]))
