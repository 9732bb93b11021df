"""The client API's requests as ledger commands, and the ledger's outcomes as API results.

Names in the API (account and transfer flags, a chain marked by `linked`) become the log's
compact form here, and back. A name the API does not know is a malformed request.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorapay.api import schema as api
from quorapay.api.timestamps import iso
from quorapay.core.errors import QuorapayError
from quorapay.core.ledger import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Account,
    Result,
    TransferRecord,
)
from quorapay.core.ledger.commands import chains
from quorapay.core.types import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    AccountId,
    Cents,
    Command,
    CreateAccount,
    Linked,
    PayerTransfer,
    Transfer,
    TransferId,
)

LINKED_CHAIN_OPEN = "linked_chain_open"  # a request's last transfer is linked: no chain end
_ACCOUNT_FLAGS = {api.DEBITS_MUST_NOT_EXCEED_CREDITS: DEBITS_MUST_NOT_EXCEED_CREDITS,
                  api.CREDITS_MUST_NOT_EXCEED_DEBITS: CREDITS_MUST_NOT_EXCEED_DEBITS}
_TRANSFER_FLAGS = {api.BALANCING_DEBIT: BALANCING_DEBIT, api.BALANCING_CREDIT: BALANCING_CREDIT,
                   api.PENDING: PENDING, api.POST_PENDING: POST_PENDING,
                   api.VOID_PENDING: VOID_PENDING}


class BadRequest(QuorapayError):
    """The request names something the API does not know: INVALID_REQUEST."""


def create_account(spec: api.AccountSpec) -> CreateAccount:
    """The command opening `spec`'s account."""
    if spec.flags is None:
        return CreateAccount(id=AccountId(spec.id), currency=spec.currency,
                             allow_negative=spec.allow_negative)
    flags = _bits(spec.flags, _ACCOUNT_FLAGS, "account")
    limited = bool(flags & DEBITS_MUST_NOT_EXCEED_CREDITS)
    if spec.allow_negative and limited:
        raise BadRequest(f"account {spec.id!r}: allow_negative contradicts "
                         f"{api.DEBITS_MUST_NOT_EXCEED_CREDITS}")
    return CreateAccount(id=AccountId(spec.id), currency=spec.currency, allow_negative=not limited,
                         credits_must_not_exceed_debits=bool(
                             flags & CREDITS_MUST_NOT_EXCEED_DEBITS))


def transfers(specs: Sequence[api.TransferSpec], *, payer: bool
              ) -> tuple[list[Command], list[api.TransferSpec]]:
    """The commands of a request's transfers -- consecutive linked ones as one chain -- and
    the transfers of a chain left open at its end (refused: `LINKED_CHAIN_OPEN`)."""
    if not any(spec.linked for spec in specs):  # no chain: the common case, in one pass
        if payer:
            return [PayerTransfer(transfer=_transfer(spec)) for spec in specs], []
        return list(map(_transfer, specs)), []
    commands: list[Command] = []
    chain: list[Transfer | PayerTransfer] = []
    for spec in specs:
        transfer = _transfer(spec)
        chain.append(PayerTransfer(transfer=transfer) if payer else transfer)
        if not spec.linked:
            commands.append(chain[0] if len(chain) == 1 else Linked(commands=tuple(chain)))
            chain = []
    return commands, list(specs[len(specs) - len(chain):]) if chain else []


def _transfer(spec: api.TransferSpec) -> Transfer:
    flags = _bits(spec.flags, _TRANSFER_FLAGS, "transfer") if spec.flags else 0
    resolves = bool(flags & (POST_PENDING | VOID_PENDING))
    if resolves:
        return Transfer(id=TransferId(spec.id), debit=AccountId(spec.debit or ""),
                        credit=AccountId(spec.credit or ""), amount=Cents(spec.amount or 0),
                        currency="", flags=flags, pending_id=TransferId(spec.pending_id or ""),
                        timeout_ms=spec.timeout_ms or 0)
    if spec.debit is None or spec.credit is None or spec.amount is None:
        raise BadRequest(f"transfer {spec.id!r}: debit, credit and amount are required (but "
                         "for a post or void of a pending transfer)")
    return Transfer(id=TransferId(spec.id), debit=AccountId(spec.debit),
                    credit=AccountId(spec.credit), amount=Cents(spec.amount),
                    currency=spec.currency, flags=flags,
                    pending_id=TransferId(spec.pending_id or ""), timeout_ms=spec.timeout_ms or 0)


def refused(command: Command, problem: str) -> list[api.CommandResult]:
    """The results of a command invalid on its face (never logged)."""
    if not isinstance(command, Linked):
        return [api.CommandResult(id=command.id, status="invalid", detail=problem)]
    found = chains.problem(command)
    culprit = -1 if found is None else found[0]
    return [api.CommandResult(id=m.id, status="invalid", detail=problem)
            if culprit in (i, -1) else
            api.CommandResult(id=m.id, status="linked_event_failed",
                              detail=f"linked transfer {command.commands[culprit].id} is invalid")
            for i, m in enumerate(command.commands)]


def chain_open(specs: Sequence[api.TransferSpec]) -> list[api.CommandResult]:
    return [api.CommandResult(id=s.id, status=LINKED_CHAIN_OPEN,
                              detail="the request's last transfer is linked: a chain ends with "
                                     "a transfer that is not") for s in specs]


def results(result: Result) -> list[api.CommandResult]:
    """A command's outcome as API results: one, or a chain's members' in order."""
    if result.members:
        return [_result(m) for m in result.members]
    return [_result(result)]


def _result(result: Result) -> api.CommandResult:
    ts = result.ts
    return api.CommandResult(id=result.id, status=result.status.value, index=result.index,
                             detail=result.detail or None,
                             timestamp=iso(ts.wall_ms) if ts is not None else None,
                             logical=ts.logical if ts is not None else None, moved=result.moved)


def balance(account: Account) -> api.Balance:
    return api.Balance(account=account.id, currency=account.currency, balance=account.balance,
                       allow_negative=account.allow_negative,
                       flags=_names(account.flags, _ACCOUNT_FLAGS), closed=account.closed,
                       debits_pending=account.debits_pending,
                       credits_pending=account.credits_pending)


def transfer_record(record: TransferRecord) -> api.TransferRecord:
    t = record.transfer
    return api.TransferRecord(id=t.id, debit=t.debit, credit=t.credit, amount=t.amount,
                              currency=t.currency, status=record.status.value,
                              index=record.index, timestamp=iso(record.ts.wall_ms),
                              logical=record.ts.logical,
                              flags=_names(t.flags, _TRANSFER_FLAGS), moved=record.moved,
                              pending_id=t.pending_id, timeout_ms=t.timeout_ms)


def _bits(names: Sequence[str], known: dict[str, int], what: str) -> int:
    bits = 0
    for name in names:
        if name not in known:
            raise BadRequest(f"unknown {what} flag {name!r}: known are {', '.join(known)}")
        bits |= known[name]
    return bits


def _names(bits: int, known: dict[str, int]) -> list[str]:
    return [name for name, bit in known.items() if bits & bit]
