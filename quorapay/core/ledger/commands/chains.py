"""Linked chains: transfers applied all or nothing.

The members are applied in order to a working set (`Overlay`) over the ledger. If every one
succeeds, the working set is committed; if one fails, it is dropped -- no money moved -- and
every member is recorded as failed: the one that failed with its own status, the others with
`linked_event_failed`. Each member's id is then decided, like any transfer's, so asking again
returns the same outcomes.

A chain whose members were all decided before is answered as they were (a retry). A chain
mixing decided and new ids is refused and records nothing: its decided members are reported
as `id_conflict`, its new ones as `linked_event_failed`.
"""

from __future__ import annotations

from quorapay.core.ledger.book import Book, Overlay
from quorapay.core.ledger.commands import transfers
from quorapay.core.ledger.model import At, Result, Status, TransferRecord
from quorapay.core.types import MAX_CHAIN, Linked, PayerTransfer, Transfer


def members_of(chain: Linked) -> list[tuple[Transfer, bool]]:
    """Each member's transfer, and whether a payer submitted it."""
    return [(m.transfer, True) if isinstance(m, PayerTransfer) else (m, False)
            for m in chain.commands]


def problem(chain: Linked) -> tuple[int, str] | None:
    """Why the chain is invalid on its face: the member at fault (-1: the chain itself) and
    why; None if it is well formed."""
    if not 2 <= len(chain.commands) <= MAX_CHAIN:
        return -1, f"a linked chain has 2 to {MAX_CHAIN} transfers"
    seen: set[str] = set()
    for i, (transfer, _) in enumerate(members_of(chain)):
        why = transfers.validate(transfer)
        if why:
            return i, why
        if transfer.id in seen:
            return i, "transfer id appears twice in the chain"
        seen.add(transfer.id)
    return None


def validate(chain: Linked) -> str:
    found = problem(chain)
    return "" if found is None else found[1]


def refuse(chain: Linked, why: str, at: At) -> Result:
    """The answer to a chain invalid on its face: nothing is recorded."""
    found = problem(chain)
    culprit = found[0] if found is not None else -1
    members = tuple(
        Result(kind="transfer", id=t.id, status=Status.INVALID, index=at.index, ts=at.ts,
               detail=why) if i == culprit or culprit < 0 else
        Result(kind="transfer", id=t.id, status=Status.LINKED_EVENT_FAILED, index=at.index,
               ts=at.ts, detail=f"linked transfer {chain.commands[culprit].id} is invalid")
        for i, (t, _) in enumerate(members_of(chain)))
    return _chain_result(chain, members, at)


def apply(chain: Linked, book: Book, at: At) -> Result:
    members = members_of(chain)
    previous = [book.decided(t.id) for t, _ in members]
    if all(p is not None for p in previous):  # a retry: answered as decided, where decided
        answers = tuple(transfers.again(t, p, book) for (t, _), p in zip(members, previous,
                                                                   strict=True) if p is not None)
        return _chain_result(chain, answers, At(answers[0].index, answers[0].ts or at.ts))
    if any(p is not None for p in previous):
        return _mixed(chain, previous, at)
    working = Overlay(book)
    results: list[Result] = []
    for transfer, payer in members:
        result = transfers.decide(transfer, working, at, payer=payer)
        if result.status is not Status.OK:
            return _failed(chain, len(results), result, book, at)
        results.append(result)
    working.commit()
    return _chain_result(chain, tuple(results), at)


def _failed(chain: Linked, failed: int, failure: Result, book: Book, at: At) -> Result:
    """Member `failed` could not be applied: record every member as failed, move nothing."""
    culprit = members_of(chain)[failed][0]
    results: list[Result] = []
    for i, (transfer, _) in enumerate(members_of(chain)):
        status = failure.status if i == failed else Status.LINKED_EVENT_FAILED
        book.record(TransferRecord(transfer=transfer, status=status, index=at.index, ts=at.ts))
        results.append(failure if i == failed else Result(
            kind="transfer", id=transfer.id, status=status, index=at.index, ts=at.ts,
            detail=f"linked transfer {culprit.id} failed: {failure.status}",
            moved=0 if transfer.flags else None))
    return _chain_result(chain, tuple(results), at)


def _mixed(chain: Linked, previous: list[TransferRecord | None], at: At) -> Result:
    first = next(i for i, p in enumerate(previous) if p is not None)
    culprit = chain.commands[first].id
    results: list[Result] = []
    for (transfer, _), p in zip(members_of(chain), previous, strict=True):
        if p is not None:
            results.append(Result(kind="transfer", id=transfer.id, status=Status.ID_CONFLICT,
                                  index=p.index, ts=p.ts, detail=(
                                      f"decided before, at index {p.index}: a chain's "
                                      "transfers must all be new, or all be a retry")))
        else:
            results.append(Result(kind="transfer", id=transfer.id,
                                  status=Status.LINKED_EVENT_FAILED, index=at.index, ts=at.ts,
                                  detail=f"linked transfer {culprit} was decided before"))
    return _chain_result(chain, tuple(results), at)


def _chain_result(chain: Linked, members: tuple[Result, ...], at: At) -> Result:
    """A chain's result: its members', and the status of the one that failed (or ok)."""
    failed = [r.status for r in members if r.status is not Status.OK]
    status = next((s for s in failed if s is not Status.LINKED_EVENT_FAILED),
                  failed[0] if failed else Status.OK)
    return Result(kind="chain", id=chain.id, status=status, index=at.index, ts=at.ts,
                  members=members)
