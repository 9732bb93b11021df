"""Hashes that let replicas be compared without shipping their state."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from quorapay.core.ledger import Delta, Ledger
from quorapay.core.types import LogEntry

_encoder = msgspec.msgpack.Encoder()


def entry_digest(entry: LogEntry) -> str:
    """A short hash of one entry: index, epoch, payload and timestamp."""
    return hashlib.sha256(_encoder.encode(entry)).hexdigest()[:16]


def log_digest(entries: Iterable[LogEntry]) -> str:
    h = hashlib.sha256()
    for entry in entries:
        h.update(_encoder.encode(entry))
    return h.hexdigest()


def replay(entries: Iterable[LogEntry]) -> Ledger:
    """The ledger a replica must hold after applying exactly these entries, in order."""
    ledger = Ledger()
    for entry in entries:
        ledger.apply(entry, Delta())
    return ledger
