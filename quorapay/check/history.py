"""The history of a test run: every operation's invocation and completion, and every fault.

Operations follow Jepsen: a client `invoke`s an operation, which completes `ok`, `fail`
(definitively not done) or `info` (outcome unknown). Transfers carry their id and body; reads
carry the balances they saw; completions carry the log index and epoch the server reported.
"""

from __future__ import annotations

from pathlib import Path

import msgspec


class TransferBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    debit: str
    credit: str
    amount: int
    currency: str = "USD"
    flags: list[str] = []  # as the API names them (balancing_debit ...)
    pending_id: str = ""  # a post or void: the pending transfer it names


class Invoke(msgspec.Struct, frozen=True, kw_only=True, tag="invoke", omit_defaults=True):
    process: int
    op: int
    f: str  # "transfer" | "read"
    time: float
    transfer: TransferBody | None = None
    chain: str | None = None  # a member of a linked chain: the id of the chain's first


class Ok(msgspec.Struct, frozen=True, kw_only=True, tag="ok"):
    process: int
    op: int
    f: str
    time: float
    index: int  # transfers: the entry that decided it; reads: the index the read reflects
    epoch: int  # transfers: the epoch of the entry that answered; reads: the leader's
    status: str | None = None  # transfers: "ok"
    balances: dict[str, int] | None = None  # reads
    entry: int | None = None  # transfers: the entry that answered (a retry: a later one)


class Fail(msgspec.Struct, frozen=True, kw_only=True, tag="fail"):
    """Definitively not applied as ok: a ledger outcome (insufficient_funds ...) or refusal."""

    process: int
    op: int
    f: str
    time: float
    status: str  # a ledger status, or "unavailable" (no server ever took it)
    index: int | None = None  # the entry that decided it (for a ledger status)
    epoch: int | None = None
    entry: int | None = None  # the entry that answered


class Info(msgspec.Struct, frozen=True, kw_only=True, tag="info"):
    """The outcome is unknown (a timeout, a lost connection)."""

    process: int
    op: int
    f: str
    time: float
    error: str


class Nemesis(msgspec.Struct, frozen=True, kw_only=True, tag="nemesis"):
    time: float
    fault: str
    phase: str  # "start" | "stop"
    detail: str = ""


Event = Invoke | Ok | Fail | Info | Nemesis
_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    return _encoder.encode(event) + b"\n"


def read_history(path: Path) -> list[Event]:
    return [_decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]
