"""Domain identifiers and the entries of the replicated log.

Log entries are msgspec Structs because the same objects are written to disk and sent to peers;
msgspec validates them on decode, so a malformed frame or record is rejected, never half-used.
"""

from __future__ import annotations

from typing import NewType

import msgspec

from quorapay.core.hlc import ZERO, Timestamp

NodeId = NewType("NodeId", str)
Epoch = NewType("Epoch", int)
LogIndex = NewType("LogIndex", int)
AccountId = NewType("AccountId", str)
TransferId = NewType("TransferId", str)
Cents = NewType("Cents", int)  # integer minor units of the account's currency, never a float


class CreateAccount(msgspec.Struct, frozen=True, kw_only=True, tag="create_account"):
    """Open an account. `allow_negative` marks an issuer that may go below zero (deposits)."""

    id: AccountId
    currency: str
    allow_negative: bool = False


class Transfer(msgspec.Struct, frozen=True, kw_only=True, tag="transfer"):
    """Move `amount` from the debit account to the credit account, both in `currency`."""

    id: TransferId
    debit: AccountId
    credit: AccountId
    amount: Cents
    currency: str


Command = CreateAccount | Transfer


class Commands(msgspec.Struct, frozen=True, kw_only=True, tag="commands"):
    """A batch of client commands, applied in order. An empty batch is a barrier."""

    commands: tuple[Command, ...]


class EpochStart(msgspec.Struct, frozen=True, kw_only=True, tag="epoch_start"):
    """The first entry a new leader appends; committing it commits everything before it."""

    leader: NodeId


Payload = Commands | EpochStart


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One position of the replicated log. (index, epoch) identifies the entry uniquely.

    `ts` is the hybrid logical clock timestamp the leader stamped it with at append: along a
    log, timestamps strictly increase with the index.
    """

    index: LogIndex
    epoch: Epoch
    payload: Payload
    ts: Timestamp = ZERO

    @property
    def weight(self) -> int:
        """A size estimate in commands, used to bound message and fetch sizes."""
        return 1 + (len(self.payload.commands) if isinstance(self.payload, Commands) else 0)
