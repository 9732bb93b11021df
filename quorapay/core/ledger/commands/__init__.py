"""Every kind of command the ledger applies, each in its own module, behind one registry.

A kind says how to check a command on its face (`validate`: the same answer on every node and
at the client API) and how to apply it to a `Book`; a new kind is a new module and a line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quorapay.core.ledger.book import Book
from quorapay.core.ledger.commands import accounts, chains, transfers
from quorapay.core.ledger.model import At, Result, Status
from quorapay.core.types import (
    CloseAccount,
    Command,
    CreateAccount,
    Linked,
    PayerTransfer,
    ReopenAccount,
    Transfer,
)


@dataclass(frozen=True, slots=True)
class Kind:
    validate: Callable[[Any], str]
    apply: Callable[[Any, Book, At], Result]
    result: str  # what its result is about: "transfer" | "account" | "chain"
    refuse: Callable[[Any, str, At], Result] | None = None  # invalid: the answer, if special


KINDS: dict[type, Kind] = {
    Transfer: Kind(transfers.validate, transfers.decide, "transfer"),
    PayerTransfer: Kind(transfers.validate_payer, transfers.apply_payer, "transfer"),
    Linked: Kind(chains.validate, chains.apply, "chain", chains.refuse),
    CreateAccount: Kind(accounts.validate_create, accounts.create, "account"),
    CloseAccount: Kind(accounts.validate_named, accounts.close, "account"),
    ReopenAccount: Kind(accounts.validate_named, accounts.reopen, "account"),
}


def validate(command: Command) -> str:
    """Why a command is invalid on its face, or "" if it is well formed."""
    return KINDS[type(command)].validate(command)


def apply_command(command: Command, book: Book, at: At) -> Result:
    """Apply one command of the entry at `at`: invalid ones change nothing."""
    kind = KINDS[type(command)]
    problem = kind.validate(command)
    if not problem:
        return kind.apply(command, book, at)
    if kind.refuse is not None:
        return kind.refuse(command, problem, at)
    return Result(kind=kind.result, id=command.id, status=Status.INVALID, index=at.index,
                  detail=problem, ts=at.ts if kind.result == "transfer" else None)
