"""Rows of the ledger as a snapshot and the digest see them: each row's encoded size and hash.

A decided transfer has one form in memory (`TransferRecord`) and one as a row (`TransferRow`,
the transfers table's columns in order); both give the same size and the same hash.
"""

from __future__ import annotations

import hashlib

import msgspec

from quorapay.core.hlc import Timestamp
from quorapay.core.ledger.model import Account, Status, TransferRecord, TransferRow
from quorapay.core.types import Transfer

MODULUS = 2**256

TransferValues = tuple[str, str, str, int, str, Status, int, int, int, int, int, str, int]


def record_values(r: TransferRecord) -> TransferValues:
    """A decided transfer's fields in a TransferRow's (and the transfers table's) order."""
    t = r.transfer
    return (t.id, t.debit, t.credit, t.amount, t.currency, r.status, r.index, r.ts.wall_ms,
            r.ts.logical, t.flags, r.moved, t.pending_id, t.timeout_ms)


def transfer_row(r: TransferRecord) -> TransferRow:
    t = r.transfer
    return TransferRow(t.id, t.debit, t.credit, t.amount, t.currency, r.status, r.index,
                       r.ts.wall_ms, r.ts.logical, t.flags, r.moved, t.pending_id, t.timeout_ms)


def record_of(t: TransferRow) -> TransferRecord:
    return TransferRecord(transfer=Transfer(id=t.id, debit=t.debit, credit=t.credit,
                                            amount=t.amount, currency=t.currency, flags=t.flags,
                                            pending_id=t.pending_id, timeout_ms=t.timeout_ms),
                          status=t.status, index=t.index, ts=Timestamp(t.wall_ms, t.logical),
                          moved=t.moved)


# ------------------------------------------------------------------------------ sizes

def _str_size(text: str) -> int:
    """A msgpack str: ids and currencies are ASCII (validated), so a byte per character."""
    return len(text) + (1 if len(text) < 32 else 2 if len(text) < 256 else 3)


def _int_size(value: int) -> int:
    """A non-negative msgpack int (negative ones are at most 9 bytes too)."""
    return 1 if 0 <= value < 128 else 2 if 0 <= value < 256 else 3 if 0 <= value < 65536 \
        else 5 if 0 <= value < 2**32 else 9


def account_size(a: Account) -> int:
    """An account's row, its balance counted at its largest and its pending amounts at their
    smallest (they are nearly always zero): within a few bytes."""
    return 1 + _str_size(a.id) + _str_size(a.currency) + 1 + 9 + 1 + 1 + 1 + _int_size(a.index)


def record_size(r: TransferRecord) -> int:
    """A decided transfer's size as a TransferRow, encoded."""
    return _transfer_size(*record_values(r))


def row_size(t: TransferRow) -> int:
    """A TransferRow, encoded."""
    return _transfer_size(*msgspec.structs.astuple(t))


def _transfer_size(transfer_id: str, debit: str, credit: str, amount: int, currency: str,
                   status: Status, index: int, wall_ms: int, logical: int, flags: int,
                   moved: int, pending_id: str, timeout_ms: int) -> int:
    return (1 + _str_size(transfer_id) + _str_size(debit) + _str_size(credit)
            + _int_size(amount) + _str_size(currency) + _str_size(status.value)
            + _int_size(index) + _int_size(wall_ms) + _int_size(logical)
            + (1 if flags < 128 else _int_size(flags)) + _int_size(moved)
            + (1 if not pending_id else _str_size(pending_id))
            + (1 if not timeout_ms else _int_size(timeout_ms)))


# ------------------------------------------------------------------------------ hashes

def account_row(a: Account) -> str:
    """An account as the digest hashes it."""
    return (f"A|{a.id}|{a.currency}|{a.flags}|{a.balance}|{a.debits_pending}"
            f"|{a.credits_pending}|{int(a.closed)}|{a.index}")


def row_hash(row: str) -> int:
    return int.from_bytes(hashlib.sha256(row.encode()).digest())


def record_hash(r: TransferRecord) -> int:
    """A decided transfer's hash in the ledger digest."""
    return _transfer_hash(*record_values(r))


def transfer_row_hash(t: TransferRow) -> int:
    """`record_hash`, from its row."""
    return _transfer_hash(*msgspec.structs.astuple(t))


def _transfer_hash(transfer_id: str, debit: str, credit: str, amount: int, currency: str,
                   status: Status, index: int, wall_ms: int, logical: int, flags: int,
                   moved: int, pending_id: str, timeout_ms: int) -> int:
    return row_hash(f"T|{transfer_id}|{debit}|{credit}|{amount}|{currency}|{status}"
                    f"|{index}|{wall_ms}|{logical}|{flags}|{moved}|{pending_id}|{timeout_ms}")
