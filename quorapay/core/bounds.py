"""The ranges every number and string that crosses a trust boundary must fall in.

Peer frames, znode contents and disk records are decoded against these bounds (msgspec
constraints), so an out-of-range value is refused where it arrives -- a decoding error, which the
receiver reports and drops -- and is never stored, compared or computed with. Every bound lies
far inside SQLite's signed 64-bit INTEGER; counters are exact in any JSON client (2^53).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_COUNTER = 2**53 - 1  # epochs, log indexes, sequence numbers, milliseconds, counts
MAX_MONEY = 2**62  # balances and amounts as stored: ledger arithmetic stays inside +-2^62
MAX_TEXT = 256  # bytes of an id or currency as carried (the ledger validates the format)

Counter = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]
SignedCounter = Annotated[int, msgspec.Meta(ge=-MAX_COUNTER, le=MAX_COUNTER)]
Money = Annotated[int, msgspec.Meta(ge=-MAX_MONEY, le=MAX_MONEY)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


def in_counter_range(value: object) -> bool:
    """Whether `value` is an int (not a bool) a Counter field would accept."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER
