"""Domain identifiers and the entries of the replicated log.

Log entries are msgspec Structs because the same objects are written to disk and sent to peers;
msgspec validates them on decode, so a malformed frame or record is rejected, never half-used.
They are immutable values that cannot hold a reference cycle, so they are kept out of Python's
cycle collector (`gc=False`): a node holds millions of them, and a full collection scanning
them all stalled its event loop for 0.4 s every few seconds.
"""

from __future__ import annotations

from typing import Annotated, NewType

import msgspec

from quorapay.core.bounds import MAX_COUNTER, MAX_MONEY, MAX_TEXT
from quorapay.core.hlc import ZERO, Timestamp

NodeId = NewType("NodeId", str)
Epoch = NewType("Epoch", int)
LogIndex = NewType("LogIndex", int)
AccountId = NewType("AccountId", str)
TransferId = NewType("TransferId", str)
Cents = NewType("Cents", int)  # integer minor units of the account's currency, never a float

# The same types as fields of decoded structs (peer frames, disk records): range-checked on
# decode, see quorapay.core.bounds.
EpochField = Annotated[Epoch, msgspec.Meta(ge=0, le=MAX_COUNTER)]
IndexField = Annotated[LogIndex, msgspec.Meta(ge=0, le=MAX_COUNTER)]
NodeIdField = Annotated[NodeId, msgspec.Meta(max_length=MAX_TEXT)]
AccountIdField = Annotated[AccountId, msgspec.Meta(max_length=MAX_TEXT)]
TransferIdField = Annotated[TransferId, msgspec.Meta(max_length=MAX_TEXT)]
CentsField = Annotated[Cents, msgspec.Meta(ge=-MAX_MONEY, le=MAX_MONEY)]
CurrencyField = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class CreateAccount(msgspec.Struct, frozen=True, kw_only=True, tag="create_account",
                    gc=False, omit_defaults=True):
    """Open an account. Its debits must not exceed its credits (its balance stays at or above
    zero) unless `allow_negative`: an issuer, which may go below zero (deposits); with
    `credits_must_not_exceed_debits`, its credits must not exceed its debits (its balance stays
    at or below zero)."""

    id: AccountIdField
    currency: CurrencyField
    allow_negative: bool = False
    credits_must_not_exceed_debits: bool = False


class CloseAccount(msgspec.Struct, frozen=True, kw_only=True, tag="close_account", gc=False):
    """Close an account: it takes part in no transfer until reopened. Closing a closed one is
    a no-op."""

    id: AccountIdField


class ReopenAccount(msgspec.Struct, frozen=True, kw_only=True, tag="reopen_account", gc=False):
    """Reopen a closed account. Reopening an open one is a no-op."""

    id: AccountIdField


BALANCING_DEBIT = 1  # Transfer.flags: move at most what the debit account's limit allows
BALANCING_CREDIT = 2  # ... at most what the credit account's limit allows
PENDING = 4  # reserve the amount (pending on both accounts) until posted, voided or expired
POST_PENDING = 8  # post the pending transfer `pending_id`: all of it, or `amount` of it
VOID_PENDING = 16  # release the pending transfer `pending_id`
RESOLUTION = 32  # not a command: the ledger's record of how a pending transfer was resolved
TRANSFER_FLAGS = BALANCING_DEBIT | BALANCING_CREDIT | PENDING | POST_PENDING | VOID_PENDING
RESOLVES = POST_PENDING | VOID_PENDING


class Transfer(msgspec.Struct, frozen=True, kw_only=True, tag="transfer",
               gc=False, omit_defaults=True):
    """Move `amount` from the debit account to the credit account, both in `currency`. A
    balancing transfer (`flags`) moves at most `amount`: as much as its accounts' limits
    allow. A pending one reserves it instead, until a transfer posting or voiding it (its
    `pending_id`) or, with `timeout_ms`, until the log's time passes its entry's by that much.
    A post or void may leave debit, credit and currency empty (they are the pending one's);
    a post's `amount` 0 posts all of it."""

    id: TransferIdField
    debit: AccountIdField
    credit: AccountIdField
    amount: CentsField
    currency: CurrencyField
    flags: Annotated[int, msgspec.Meta(ge=0, le=TRANSFER_FLAGS | RESOLUTION)] = 0
    pending_id: TransferIdField = TransferId("")
    timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)] = 0


class PayerTransfer(msgspec.Struct, frozen=True, kw_only=True, tag="payer_transfer",
                    gc=False):
    """A transfer submitted with a payer's credential: it may not debit an issuer account
    (that would create money), which the ledger decides -- deterministically, from the log --
    as `forbidden`. Otherwise it is its transfer: the same id, the same body, the same record."""

    transfer: Transfer

    @property
    def id(self) -> TransferId:
        return self.transfer.id


MAX_CHAIN = 1000  # members of a linked chain (a batch is at most as long)


class Linked(msgspec.Struct, frozen=True, kw_only=True, tag="linked", gc=False):
    """A chain of transfers applied all or nothing, in order: if one fails, none moves money,
    and each member's result says which one failed."""

    commands: tuple[Transfer | PayerTransfer, ...]

    @property
    def id(self) -> TransferId:
        """The first member's id (a chain is named by it in logs)."""
        return self.commands[0].id if self.commands else TransferId("")


Command = CreateAccount | Transfer | PayerTransfer | Linked | CloseAccount | ReopenAccount


class Commands(msgspec.Struct, frozen=True, kw_only=True, tag="commands",
               gc=False):
    """A batch of client commands, applied in order. An empty batch is a barrier."""

    commands: tuple[Command, ...]


class EpochStart(msgspec.Struct, frozen=True, kw_only=True, tag="epoch_start",
                 gc=False):
    """The first entry a new leader appends; committing it commits everything before it."""

    leader: NodeIdField


Payload = Commands | EpochStart


class LogEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One position of the replicated log. (index, epoch) identifies the entry uniquely.

    `ts` is the hybrid logical clock timestamp the leader stamped it with at append: along a
    log, timestamps strictly increase with the index.
    """

    index: IndexField
    epoch: EpochField
    payload: Payload
    ts: Timestamp = ZERO

    @property
    def weight(self) -> int:
        """A size estimate in commands, used to bound message and fetch sizes."""
        if not isinstance(self.payload, Commands):
            return 1
        commands = self.payload.commands
        return 1 + len(commands) + sum(len(c.commands) - 1 for c in commands
                                       if c.__class__ is Linked)


def command_weight(command: Command) -> int:
    """How many transfers or accounts a command decides: a chain's members, else one."""
    return len(command.commands) if isinstance(command, Linked) else 1
