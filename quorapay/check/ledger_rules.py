"""Rules every applied entry must keep, checked from its rows alone -- not by the ledger's own
code -- by the bank checker and the simulator as they replay a committed log:

- balances move only by ok transfers: each account's balance changes by exactly what the
  transfers and posts decided ok in the entry moved, and its pending amounts by exactly what
  the pending transfers reserved and the resolutions released (a failed transfer moves nothing);
- money conserved counting pending: per currency, the amounts pending on debit sides equal
  those pending on credit sides (the balances' sum is the ledger's own `money conserved`);
- pending transfers resolved exactly once: no pending transfer is posted, voided or expired
  twice, and each resolution names a pending transfer that reserved what it releases;
- a post never exceeds its reservation;
- linked chains apply all or nothing: a chain's members are all ok, or none is;
- account limits kept at every index: after every entry each account keeps the limits its
  flags set, the amounts pending on it counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from quorapay.core.ledger import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Account,
    Delta,
    Result,
    Status,
    TransferRecord,
)
from quorapay.core.types import PENDING, RESOLUTION, VOID_PENDING, AccountId, Commands, LogEntry

MOVES = "balances move only by ok transfers"
PENDING_CONSERVED = "money conserved counting pending"
RESOLVED_ONCE = "pending transfers resolved exactly once"
POST_WITHIN = "a post never exceeds its reservation"
CHAINS = "linked chains apply all or nothing"
LIMITS = "account limits kept at every index"
RULES = (MOVES, PENDING_CONSERVED, RESOLVED_ONCE, POST_WITHIN, CHAINS, LIMITS)

Problem = tuple[str, str]  # (rule, what happened)


class LedgerRules:
    """Follows a log entry by entry (each applied once, in order), keeping each account as its
    rows last showed it and the pending transfers as their records showed them."""

    def __init__(self) -> None:
        self._accounts: dict[AccountId, tuple[int, int, int]] = {}  # balance, pending d, c
        self._pending: dict[str, int] = {}  # reservations not resolved: id -> amount
        self._resolved: set[str] = set()
        self._pending_sums: dict[str, int] = {}  # currency -> debits minus credits pending

    def check(self, entry: LogEntry, results: Sequence[Result], delta: Delta) -> list[Problem]:
        """The rules `entry` broke, given what applying it returned."""
        expected: dict[AccountId, list[int]] = {}  # balance, debits, credits pending changes
        problems = [p for r in delta.transfers for p in self._record(r, entry.index, expected)]
        problems += self._changes(entry.index, delta.accounts.values(), expected)
        commands = entry.payload.commands if isinstance(entry.payload, Commands) else ()
        for command, result in zip(commands, results, strict=True):
            if len({m.status is Status.OK for m in result.members}) > 1:
                problems.append((CHAINS, f"the chain of {command.id} at index {entry.index} "
                                         "was applied in part"))
        problems += [(LIMITS, f"{why} after index {entry.index}")
                     for why in limit_problems(delta.accounts.values())]
        return problems

    def _record(self, record: TransferRecord, index: int,
                expected: dict[AccountId, list[int]]) -> list[Problem]:
        """What a decided transfer must have changed, and what it may not be."""
        t, moved = record.transfer, record.moved
        if t.flags & RESOLUTION:
            return self._resolution(record, index, expected)
        if record.status is not Status.OK:
            return [(MOVES, f"transfer {t.id} failed ({record.status}) at index {index} but "
                            f"moved {moved}")] if moved else []
        problems = []
        if t.flags & PENDING:
            self._pending[t.id] = moved
            _add(expected, t.debit, 1, moved)
            _add(expected, t.credit, 2, moved)
        elif not t.flags & VOID_PENDING:
            _add(expected, t.debit, 0, -moved)
            _add(expected, t.credit, 0, moved)
        if not t.flags & VOID_PENDING and not (t.pending_id and not t.amount) and \
                not 1 <= moved <= t.amount:
            problems.append((MOVES, f"transfer {t.id} moved {moved} of its {t.amount} at "
                                    f"index {index}"))
        return problems

    def _resolution(self, record: TransferRecord, index: int,
                    expected: dict[AccountId, list[int]]) -> list[Problem]:
        t, pending_id = record.transfer, record.transfer.pending_id
        problems = []
        if pending_id in self._resolved:
            problems.append((RESOLVED_ONCE, f"pending transfer {pending_id} was {record.status} "
                                            f"at index {index}, resolved before"))
        reserved = self._pending.pop(pending_id, None)
        if reserved is not None and reserved != t.amount:
            problems.append((RESOLVED_ONCE, f"pending transfer {pending_id} reserved {reserved} "
                                            f"but its resolution at index {index} released "
                                            f"{t.amount}"))
        if record.moved > t.amount:
            problems.append((POST_WITHIN, f"pending transfer {pending_id} reserved {t.amount} "
                                          f"and {record.moved} was posted at index {index}"))
        self._resolved.add(pending_id)
        _add(expected, t.debit, 1, -t.amount)
        _add(expected, t.credit, 2, -t.amount)
        return problems

    def _changes(self, index: int, accounts: Iterable[Account],
                 expected: dict[AccountId, list[int]]) -> list[Problem]:
        problems = []
        for a in accounts:
            before = self._accounts.get(a.id, (0, 0, 0))
            now = (a.balance, a.debits_pending, a.credits_pending)
            change = [n - b for n, b in zip(now, before, strict=True)]
            if change != expected.pop(a.id, [0, 0, 0]):
                problems.append((MOVES, f"{a.id} changed by {change} (balance, debits and "
                                        f"credits pending) at index {index}, not as its "
                                        "transfers say"))
            sums = self._pending_sums
            sums[a.currency] = sums.get(a.currency, 0) + change[1] - change[2]
            self._accounts[a.id] = now
        problems += [(MOVES, f"transfers changed {account_id} by {change} at index {index} but "
                             "its row did not change")
                     for account_id, change in expected.items() if any(change)]
        problems += [(PENDING_CONSERVED, f"after index {index} {total} more is pending on "
                                         f"debit than on credit sides in {currency}")
                     for currency, total in self._pending_sums.items() if total]
        return problems


def limit_problems(accounts: Iterable[Account]) -> list[str]:
    """Each account that passes a limit its flags set."""
    problems = []
    for a in accounts:
        if a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and a.balance - a.debits_pending < 0:
            problems.append(f"{a.id}'s debits exceed its credits (balance {a.balance}, "
                            f"{a.debits_pending} pending)")
        if a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and -a.balance - a.credits_pending < 0:
            problems.append(f"{a.id}'s credits exceed its debits (balance {a.balance}, "
                            f"{a.credits_pending} pending)")
    return problems


def _add(expected: dict[AccountId, list[int]], account: AccountId, which: int,
         amount: int) -> None:
    expected.setdefault(account, [0, 0, 0])[which] += amount
