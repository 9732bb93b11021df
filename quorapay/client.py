"""The Python client of the Quorapay API.

`Client` keeps one websocket to the node it believes leads, follows NOT_LEADER redirects, and
retries UNAVAILABLE, TIMEOUT and lost connections with the *same* request -- the same transfer
ids -- until its deadline, which is safe because the ledger decides each id once. If the deadline
passes after any attempt whose outcome is unknown, the error is TIMEOUT: retry later with the
same ids. A credential the nodes refuse (UNAUTHENTICATED) or an operation its role may not call
(FORBIDDEN) fails at once.

Requests may be pipelined: any number of tasks may call one Client at once, and their requests
share its connection (up to PIPELINE_DEPTH in flight, as a node accepts), each answered by its
`req` (a reader task routes the answers). A connection that fails fails every request waiting
on it; each is retried as above.

Nodes speak TLS (wss://) and want a client certificate of the cluster's CA. Give the client a
TLS context holding one -- `quorapay.security.tls.credential_context(cluster, "payer")` builds it
from a cluster file's secrets dir, or build it with the `ssl` module from the PEM files:

    tls = ssl.create_default_context(cafile="secrets/ca.pem")
    tls.load_cert_chain("secrets/clients/payer.pem", "secrets/clients/payer.key")
    async with Client(["wss://127.0.0.1:7201/", ...], tls=tls) as client:
        results = await client.submit_transfers([TransferSpec(id="t1", debit="a", ...)])
"""

from __future__ import annotations

import itertools
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from quorapay.api import schema as api
from quorapay.api.schema import AccountSpec, TransferSpec
from quorapay.core.errors import QuorapayError
from quorapay.transport.address import parse_url
from quorapay.transport.dial import DialedLink, TlsRefused, dial

RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)
SUSPICION = 5.0  # seconds a node that failed to answer is tried only when all others fail too
PIPELINE_DEPTH = 64  # requests in flight on one connection (what a node accepts at once)


class ClientError(QuorapayError):
    """A request failed definitively, or could not get an answer before the deadline."""

    def __init__(self, error: api.Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error

    @property
    def code(self) -> api.ErrorCode:
        return self.error.code


class Client:
    def __init__(self, urls: Sequence[str], *, tls: ssl.SSLContext | None = None,
                 deadline: float = 30.0, attempt_timeout: float = 6.0,
                 connect_timeout: float = 2.0, retry_delays: Sequence[float] = RETRY_DELAYS,
                 on_retry: Callable[[str], None] = lambda _: None) -> None:
        """`on_retry(why)` is told each time an attempt gets no outcome and another follows;
        `retry_delays` are the pauses before the 1st, 2nd, ... retry (the last one repeats)."""
        if not urls:
            raise ValueError("a client needs at least one node url")
        for url in urls:
            _, secure = parse_url(url)
            if secure and tls is None:
                raise ValueError(f"{url} needs a TLS context holding a client certificate "
                                 "(tls=...; see quorapay.security.tls.credential_context)")
        if not retry_delays or min(retry_delays) < 0:
            raise ValueError("retry_delays must be a non-empty sequence of seconds >= 0")
        self._tls = tls
        self._retry_delays = tuple(retry_delays)
        self._on_retry = on_retry
        self._urls = list(urls)
        self._deadline = deadline
        self._attempt_timeout = attempt_timeout
        # A connection that races with the death of a node can hang in its listen backlog;
        # a healthy node completes the websocket handshake in milliseconds.
        self._connect_timeout = connect_timeout
        self._rotation = itertools.cycle(self._urls)
        self._url: str | None = None
        self._ws: DialedLink | None = None
        self._generation = 0  # of the connection in self._ws: each new one counts up
        self._dialing = trio.Lock()
        self._waiting: dict[int, _Waiting] = {}  # req -> a request waiting for its answer
        self._in_flight = trio.Semaphore(PIPELINE_DEPTH)
        self._req = 0
        self._answered = False  # did any node ever answer this client?
        self._suspects: dict[str, float] = {}  # url -> when it last failed to answer
        # attempts retried, by why: an error code, NO_ANSWER, or LOST_WRITE (a write sent on a
        # connection that failed before its answer: its outcome was unknown until the retry)
        self.retried: Counter[str] = Counter()
        self._nursery_manager = trio.open_nursery()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Client:
        self._nursery = await self._nursery_manager.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._nursery is not None
        try:
            with trio.CancelScope(shield=True):  # bounded: a polite second, then the socket
                await self._close()
        finally:
            self._nursery.cancel_scope.cancel()
            # The nursery only runs our websocket tasks: never wrap the caller's own exception
            # in an exception group; let it propagate unchanged.
            await self._nursery_manager.__aexit__(None, None, None)
        return None

    # ------------------------------------------------------------------ operations

    async def create_accounts(self, accounts: Sequence[AccountSpec]) -> list[api.CommandResult]:
        response = await self.request(api.CreateAccounts(accounts=list(accounts)))
        return response.results or []

    async def submit_transfers(self, transfers: Sequence[TransferSpec]
                               ) -> list[api.CommandResult]:
        response = await self.request(api.SubmitTransfers(transfers=list(transfers)))
        return response.results or []

    async def close_accounts(self, accounts: Sequence[str]) -> list[api.CommandResult]:
        """Operator: these accounts take part in no transfer until reopened."""
        response = await self.request(api.CloseAccounts(accounts=list(accounts)))
        return response.results or []

    async def reopen_accounts(self, accounts: Sequence[str]) -> list[api.CommandResult]:
        response = await self.request(api.ReopenAccounts(accounts=list(accounts)))
        return response.results or []

    async def balances(self, accounts: Sequence[str]) -> list[api.Balance]:
        response = await self.request(api.GetBalances(accounts=list(accounts)))
        return response.balances or []

    async def transfers(self, ids: Sequence[str]) -> list[api.TransferRecord]:
        response = await self.request(api.GetTransfers(ids=list(ids)))
        return response.transfers or []

    async def barrier(self) -> int:
        """Commit an empty entry; return its index. Succeeds only when a leader can commit."""
        response = await self.request(api.Barrier())
        assert response.index is not None
        return response.index

    # ------------------------------------------------------------------ the retry loop

    async def request(self, request: api.Request) -> api.Response:
        """Send until a definitive answer or the deadline; raise ClientError on failure."""
        unknown = False
        last: api.Error | None = None
        attempts = 0
        attempt = _Attempt()
        with trio.move_on_after(self._deadline) as deadline:
            while True:
                response, lost = await self._attempt(request, attempt)
                unknown = unknown or lost
                if response is not None and response.error is None:
                    return response
                if response is not None:
                    assert response.error is not None
                    last = response.error
                    unknown = unknown or last.code is api.ErrorCode.TIMEOUT
                    if not last.retryable:
                        raise ClientError(last)
                self.retried[last.code.value if response is not None and last is not None
                             else "LOST_WRITE" if lost else "NO_ANSWER"] += 1
                if response is not None and last is not None \
                        and last.code is api.ErrorCode.NOT_LEADER and last.leader is not None \
                        and last.leader.url != self._url \
                        and not self._suspected(last.leader.url):
                    await self._switch(last.leader.url, attempt.generation)
                    continue
                await self._switch(None, attempt.generation)
                self._on_retry(f"retrying ({last.code}: {last.message})" if last else
                               "retrying (no node answered yet)")
                await trio.sleep(self._retry_delays[min(attempts, len(self._retry_delays) - 1)])
                attempts += 1
        if deadline.cancelled_caught:
            # The deadline may have cut an attempt short after its write was sent: then the
            # outcome is unknown. And a connection that did not answer in time is not reused.
            unknown = unknown or attempt.write_unanswered
            await self._switch(None, attempt.generation)
        code = api.ErrorCode.TIMEOUT if unknown else api.ErrorCode.UNAVAILABLE
        if not self._answered:
            raise ClientError(api.error(code, (
                f"no node answered at {', '.join(self._urls)} within {self._deadline:g}s; "
                "is the cluster running? (`quorapay up` starts it)")))
        detail = f" (last error: {last.code}: {last.message})" if last else ""
        message = (f"no answer within {self._deadline:g}s"
                   + ("; the outcome is unknown: retry with the same ids, it is safe"
                      if unknown else "") + detail)
        raise ClientError(api.error(code, message))

    async def _attempt(self, request: api.Request, attempt: _Attempt | None = None
                       ) -> tuple[api.Response | None, bool]:
        """One try. Returns (response or None, whether the outcome may be unknown)."""
        attempt = attempt if attempt is not None else _Attempt()
        self._req += 1
        req = self._req
        waiting = _Waiting()
        attempt.write_unanswered = False
        try:
            async with self._in_flight:
                ws = await self._connection(attempt)
                waiting.generation = attempt.generation
                self._waiting[req] = waiting
                with trio.fail_after(self._attempt_timeout):
                    await ws.send_message(
                        api.encode(msgspec.structs.replace(request, req=req)).decode())
                    attempt.write_unanswered = _is_write(request)
                    await waiting.done.wait()
            if waiting.response is None:
                raise ConnectionClosed(None)  # (the reader saw the connection fail)
            attempt.write_unanswered = False
            self._answered = True
            if self._url is not None:
                self._suspects.pop(self._url, None)
            return waiting.response, False
        except ConnectionRejected as rejected:
            await self._close(attempt.generation)
            return _rejection(rejected, self._url), False
        except TlsRefused as refused:
            await self._close(attempt.generation)
            return api.Response(req=req, error=api.error(
                api.ErrorCode.UNAUTHENTICATED, str(refused))), False
        except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError):
            await self._failed(attempt.generation)
            return None, attempt.write_unanswered
        finally:
            self._waiting.pop(req, None)

    def _suspected(self, url: str) -> bool:
        failed = self._suspects.get(url)
        return failed is not None and time.monotonic() - failed < SUSPICION

    def _next_url(self) -> str:
        """The next node in turn, passing over those that just failed (unless all did)."""
        for _ in range(len(self._urls)):
            url = next(self._rotation)
            if not self._suspected(url):
                return url
        return next(self._rotation)

    async def _connection(self, attempt: _Attempt) -> WebSocketConnection:
        """The connection (dialed if there is none; one dial for many waiting tasks)."""
        async with self._dialing:
            if self._ws is None:
                if self._url is None:
                    self._url = self._next_url()
                assert self._nursery is not None
                address, secure = parse_url(self._url)
                self._generation += 1
                attempt.generation = self._generation
                self._ws = await dial(self._nursery, address,
                                      tls=self._tls if secure else None,
                                      timeout=self._connect_timeout,
                                      max_message_size=64 * 2**20)
                self._nursery.start_soon(self._read_answers, self._ws.ws, self._generation)
            attempt.generation = self._generation
            return self._ws.ws

    async def _read_answers(self, ws: WebSocketConnection, generation: int) -> None:
        """Route each answer on one connection to the request waiting for it; when the
        connection fails (or sends something undecodable), fail every request still waiting."""
        try:
            while True:
                response = api.decode_response(await ws.get_message())
                waiting = self._waiting.get(response.req)
                if waiting is not None and waiting.generation == generation:
                    waiting.response = response
                    waiting.done.set()
        except (ConnectionClosed, msgspec.DecodeError, trio.ClosedResourceError,
                trio.BrokenResourceError):
            pass
        finally:
            for waiting in self._waiting.values():
                if waiting.generation == generation:
                    waiting.done.set()  # with no response: the connection failed
            with trio.CancelScope(shield=True):
                await self._failed(generation)

    async def _failed(self, generation: int) -> None:
        """Connection `generation` failed (or never came up): if it is still the current one,
        suspect its node, close it, and move on to the next node in turn. (A connection this
        client closed itself is not current any more: nothing to do.)"""
        if generation != self._generation:
            return
        if self._url is not None:
            self._suspects[self._url] = time.monotonic()
        await self._close(generation)
        self._url = None

    async def _switch(self, url: str | None, generation: int) -> None:
        """Move to `url` (None: the next in turn) -- unless another request already replaced
        the connection this one used."""
        if generation != self._generation:
            return
        await self._close(generation)
        self._url = url

    async def _close(self, generation: int | None = None) -> None:
        """Close the connection (only if it is still `generation`'s, when given). Requests
        that used it no longer match the generation: the first to fail decides what next."""
        if self._ws is not None and generation in (None, self._generation):
            ws, self._ws = self._ws, None
            self._generation += 1
            await ws.aclose()


@dataclass(slots=True)
class _Attempt:
    """One request's retries: the connection it used last; whether a write of it went out
    and got no answer (its outcome unknown)."""

    generation: int = 0
    write_unanswered: bool = False


@dataclass(slots=True)
class _Waiting:
    """A request sent on connection `generation`, waiting for its answer (None: it failed)."""

    generation: int = 0
    response: api.Response | None = None
    done: trio.Event = field(default_factory=trio.Event)


def _is_write(request: api.Request) -> bool:
    return isinstance(request, api.CreateAccounts | api.SubmitTransfers | api.CloseAccounts
                      | api.ReopenAccounts | api.Barrier)


def _rejection(rejected: ConnectionRejected, url: str | None) -> api.Response:
    """The node refused the upgrade: 401 no credential, 403 a credential it does not admit."""
    reason = (rejected.body or b"").decode(errors="replace").strip() or \
        f"HTTP {rejected.status_code}"
    code = api.ErrorCode.FORBIDDEN if rejected.status_code == 403 else \
        api.ErrorCode.UNAUTHENTICATED
    return api.Response(req=0, error=api.error(code, f"{url} refused this client: {reason}"))


async def node_request(url: str, request: api.Request, *, tls: ssl.SSLContext | None,
                       timeout: float = 3.0) -> api.Response:
    """Ask one specific node, once (status, digests). Raises ClientError if it cannot answer."""
    async with Client([url], tls=tls, deadline=timeout, attempt_timeout=timeout) as client:
        response, _ = await client._attempt(request)
    if response is None:
        raise ClientError(api.error(api.ErrorCode.UNAVAILABLE, f"node at {url} did not answer"))
    if response.error is not None:
        raise ClientError(response.error)
    return response
