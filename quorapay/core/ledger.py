"""The deterministic payment state machine: double entry, integer minor units.

Owns accounts and the record of every decided transfer. Applying the same log in the same order
always produces the same results and the same state, on every replica. Pure: it never persists;
`apply` returns the rows that changed so the driver can write them in the same transaction that
advances the applied index.

Invariants: the balances of each currency sum to zero (money is created only by moving it out of
an issuer account that may go negative); a transfer id is decided once, and asking again returns
the original outcome.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import islice
from typing import assert_never

import msgspec

from quorapay.core.bounds import Counter, Money
from quorapay.core.hlc import ZERO, Timestamp
from quorapay.core.stored import StoredTransfers
from quorapay.core.types import (
    AccountId,
    AccountIdField,
    CentsField,
    Command,
    Commands,
    CreateAccount,
    CurrencyField,
    IndexField,
    LogEntry,
    LogIndex,
    PayerTransfer,
    Transfer,
    TransferId,
    TransferIdField,
)

MAX_AMOUNT = 2**53 - 1  # exact in every JSON client
MAX_BALANCE = 2**62  # far inside SQLite's signed 64-bit INTEGER
_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{0,11}")


class Status(StrEnum):
    """The outcome of one command. Every status except OK is a definitive failure."""

    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID = "invalid"
    ID_CONFLICT = "id_conflict"
    FORBIDDEN = "forbidden"  # a payer's transfer debiting an issuer account


@dataclass(slots=True, kw_only=True)
class Account:
    id: AccountId
    currency: str
    allow_negative: bool
    balance: int
    index: LogIndex  # the entry that created it


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A decided transfer: its body, its outcome and the entry that decided it (its index and
    timestamp). Not tracked by Python's cycle collector (it can hold no cycle): a ledger of
    millions would otherwise make every full collection scan them all, stalling the node."""

    transfer: Transfer
    status: Status
    index: LogIndex
    ts: Timestamp = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What a client is told about one command."""

    kind: str  # "transfer" | "account"
    id: str
    status: Status
    index: LogIndex
    detail: str = ""
    ts: Timestamp | None = None  # transfers: the timestamp of the entry that decided it


class AccountRow(msgspec.Struct, frozen=True, array_like=True):
    id: AccountIdField
    currency: CurrencyField
    allow_negative: bool
    balance: Money
    index: IndexField


class TransferRow(msgspec.Struct, frozen=True, array_like=True):
    id: TransferIdField
    debit: AccountIdField
    credit: AccountIdField
    amount: CentsField
    currency: CurrencyField
    status: Status
    index: IndexField
    wall_ms: Counter = 0  # the deciding entry's timestamp
    logical: Counter = 0


class LedgerState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole ledger as data: what a snapshot carries. Ids are unique (checked on decode:
    a snapshot is stored as rows keyed by id)."""

    accounts: tuple[AccountRow, ...]
    transfers: tuple[TransferRow, ...]

    def __post_init__(self) -> None:
        if len({a.id for a in self.accounts}) != len(self.accounts) or len(
                {t.id for t in self.transfers}) != len(self.transfers):
            raise ValueError("a ledger state lists an account or transfer id twice")


@dataclass(slots=True, kw_only=True)
class Delta:
    """Rows changed by applying entries; written with the applied index in one transaction."""

    accounts: dict[AccountId, Account] = field(default_factory=dict)
    transfers: list[TransferRecord] = field(default_factory=list)

    def detach(self) -> None:
        """Copy the account rows, so that entries applied after these (while this delta waits
        for its write) do not change what it writes."""
        self.accounts = {key: replace(account) for key, account in self.accounts.items()}


def validate(command: Command) -> str:
    """Return why a command is invalid on its face, or "" if it is well formed."""
    match command:
        case CreateAccount(id=account_id, currency=currency):
            if not _ID.fullmatch(account_id):
                return "account id must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
            if not _CURRENCY.fullmatch(currency):
                return "currency must be 1-12 upper-case letters or digits, starting with a letter"
        case PayerTransfer(transfer=transfer):
            return validate(transfer)
        case Transfer(id=transfer_id, debit=debit, credit=credit, amount=amount, currency=cur):
            for name, value in (("transfer id", transfer_id), ("debit", debit), ("credit", credit)):
                if not _ID.fullmatch(value):
                    return f"{name} must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"
            if debit == credit:
                return "debit and credit must be different accounts"
            if isinstance(amount, bool) or not 1 <= amount <= MAX_AMOUNT:
                return f"amount must be an integer number of minor units from 1 to {MAX_AMOUNT}"
            if not _CURRENCY.fullmatch(cur):
                return "currency must be 1-12 upper-case letters or digits, starting with a letter"
    return ""


class Ledger:
    """Accounts and decided transfers, changed only by `apply`.

    Accounts live in memory. Decided transfers live in memory too unless the ledger has a
    `store` (`quorapay.core.stored`): then it holds only those not yet known durable, and reads
    the rest from the store -- for a batch of entries, in one query before applying them
    (`apply_all`) -- so its memory does not grow with the transfers it has decided."""

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        transfers: Iterable[TransferRecord] = (),
        *,
        store: StoredTransfers | None = None,
        stored_upto: LogIndex = LogIndex(0),
    ) -> None:
        """`store` holds the transfers decided up to entry `stored_upto` (a node's disk)."""
        self._accounts = {a.id: a for a in accounts}
        self._store = store
        # decided transfers in memory: all of them without a store; with one, those decided
        # since their rows were last known durable (the store does not see them yet)
        self._recent = {r.transfer.id: r for r in transfers}
        self._fetched: dict[TransferId, TransferRecord | None] = {}  # read for the batch at hand
        self._count = len(self._recent) + (store.count() if store is not None else 0)
        self._upto = stored_upto  # the last entry applied
        self._totals: dict[str, int] = {}  # balances per currency, kept as they change
        for account in self._accounts.values():
            self._totals[account.currency] = self._totals.get(account.currency, 0) \
                + account.balance
        # The state's digest (see `digest`): the sum of the hashes of the rows folded in so
        # far, each account's hash as folded, and what changed since (hashed at the next fold).
        # With a store, the transfers' part is the store's (kept as it writes them), plus the
        # hashes of those decided since: only the accounts are folded here.
        self._sum = 0
        self._folded: dict[AccountId, int] = {}
        self._dirty: set[AccountId] = set(self._accounts)
        self._unfolded: list[TransferRecord] = [] if store else list(self._recent.values())
        # the encoded size of the accounts and, without a store, of the first `_sized`
        # transfers (only ever added, in order): the rest are counted when a size is asked
        self._export_bytes = sum(map(_account_size, self._accounts.values()))
        self._sized = 0
        self._generation = 0  # a fold planned before the ledger was replaced must not merge
        # a snapshot installed with its transfers staged in the store, until durable: what
        # the store will hold once it is (its count, size and digest), and as of which entry
        self._installing: tuple[StagedSums, LogIndex] | None = None

    @classmethod
    def from_state(cls, state: LedgerState) -> Ledger:
        return cls([Account(id=a.id, currency=a.currency, allow_negative=a.allow_negative,
                            balance=a.balance, index=a.index) for a in state.accounts],
                   map(record_of, state.transfers))

    @property
    def store(self) -> StoredTransfers | None:
        return self._store

    def export(self) -> LedgerState:
        """The whole state as data, rows in id order (with a store: reads every stored row)."""
        return LedgerState(
            accounts=tuple(AccountRow(a.id, a.currency, a.allow_negative, a.balance, a.index)
                           for a in sorted(self._accounts.values(), key=lambda a: a.id)),
            transfers=tuple(map(transfer_row, self.records())))

    def records(self) -> Iterator[TransferRecord]:
        """Every decided transfer, in id order (with a store: reads every stored row)."""
        return _records(self._store, self._upto, list(self._recent.values()))

    def snapshot_source(self) -> SnapshotSource:
        """The ledger as it is now, after its last applied entry, to be read in parts (a
        streamed snapshot) while it goes on: the accounts and the transfers not yet durable
        are copied; the rest are read from the store when a part is built."""
        accounts = tuple(AccountRow(a.id, a.currency, a.allow_negative, a.balance, a.index)
                         for a in sorted(self._accounts.values(), key=lambda a: a.id))
        held = tuple(map(transfer_row, sorted(
            (r for r in self._recent.values() if r.index <= self._upto), key=_record_id)))
        return SnapshotSource(index=self._upto, accounts=accounts, held=held,
                              store=self._store)

    def estimated_export_bytes(self) -> int:
        """How large `export()` encodes (msgpack), within a few bytes a row (balances counted
        at their largest): costs the transfers decided since it was last asked (with a store:
        those not yet durable; the store keeps the size of its rows)."""
        if self._store is not None:  # the store's size is as of its applied index: add the rest
            stored, upto = self._store.export_bytes()
            if self._installing is not None and upto < self._installing[1]:
                stored, upto = self._installing[0].size, self._installing[1]
            return self._export_bytes + stored + sum(
                record_size(r) for r in self._recent.values() if r.index > upto)
        new = list(islice(self._recent.values(), self._sized, None))
        self._export_bytes += sum(map(record_size, new))
        self._sized += len(new)
        return self._export_bytes

    def copy(self) -> Ledger:
        """An independent copy held in memory (its accounts are new objects; transfer records
        are immutable). With a store, it reads every stored row."""
        if self._store is not None:
            return Ledger.from_state(self.export())
        copied = Ledger()
        copied._accounts = {i: Account(id=a.id, currency=a.currency,
                                       allow_negative=a.allow_negative, balance=a.balance,
                                       index=a.index) for i, a in self._accounts.items()}
        copied._recent, copied._count, copied._upto = dict(self._recent), self._count, self._upto
        copied._totals = dict(self._totals)
        copied._sum, copied._folded = self._sum, dict(self._folded)
        copied._dirty, copied._unfolded = set(self._dirty), list(self._unfolded)
        copied._export_bytes, copied._sized = self._export_bytes, self._sized
        return copied

    def replace(self, state: LedgerState, index: LogIndex = LogIndex(0),
                staged: StagedSums | None = None) -> None:
        """Become exactly `state`, the ledger after entry `index` (a snapshot installed). With
        a store, its transfers stay in memory until `durable` says they are on disk -- or,
        `staged`, they are in the store's staging table already (then `state` holds only the
        accounts), and become the store's transfers when the install is durable. Until then
        the ledger must not look a transfer up (its driver stages no work meanwhile)."""
        other = Ledger.from_state(state)
        self._accounts, self._recent, self._fetched = other._accounts, other._recent, {}
        self._count, self._upto = other._count, index
        self._installing = None
        if staged is not None:
            assert self._store is not None, "staged transfers are in a store"
            self._count, self._installing = staged.count, (staged, index)
        self._totals, self._sum, self._folded = other._totals, other._sum, other._folded
        self._dirty = other._dirty
        self._unfolded = [] if self._store is not None else other._unfolded
        self._export_bytes, self._sized = other._export_bytes, other._sized
        self._generation += 1

    def durable(self, records: Iterable[TransferRecord],
                installed: LedgerState | None = None) -> None:
        """These decided transfers (and those of a snapshot installed) are on disk now: with a
        store, the ledger lets go of them and reads them from there."""
        if self._store is None:
            return
        if installed is not None:
            self._installing = None
            for row in installed.transfers:
                self._recent.pop(row.id, None)
        for record in records:
            self._recent.pop(record.transfer.id, None)

    @property
    def accounts(self) -> Mapping[AccountId, Account]:
        return self._accounts

    @property
    def transfers(self) -> Mapping[TransferId, TransferRecord]:
        """The decided transfers by id (with a store, a view: iterating reads every row)."""
        return _TransfersView(self)

    @property
    def transfer_count(self) -> int:
        return self._count

    @property
    def held_transfers(self) -> int:
        """Decided transfers held in memory (with a store: those not yet known durable)."""
        return len(self._recent)

    def transfer(self, transfer_id: TransferId) -> TransferRecord | None:
        """The decided transfer with this id, if any."""
        record = self._recent.get(transfer_id)
        if record is not None or self._store is None:
            return record
        if transfer_id in self._fetched:
            return self._fetched[transfer_id]
        return self._store.get_many((transfer_id,)).get(transfer_id)

    def find(self, ids: Sequence[TransferId]) -> dict[TransferId, TransferRecord]:
        """The decided transfers among `ids` (with a store: one query for those not held)."""
        found = {i: self._recent[i] for i in ids if i in self._recent}
        missing = [i for i in ids if i not in found]
        if missing and self._store is not None:
            found.update(self._store.get_many(missing))
        return found

    def apply_all(self, entries: Sequence[LogEntry], delta: Delta,
                  ) -> list[tuple[LogEntry, list[Result]]]:
        """Apply committed entries in order; with a store, the decided transfers their commands
        name are read first, in one query (the prefetch), so applying reads no disk."""
        self._prefetch(entries)
        try:
            return [(entry, self.apply(entry, delta)) for entry in entries]
        finally:
            self._fetched = {}

    def _prefetch(self, entries: Sequence[LogEntry]) -> None:
        if self._store is None:
            return
        ids = {command.id if isinstance(command, Transfer) else command.transfer.id
               for entry in entries if isinstance(entry.payload, Commands)
               for command in entry.payload.commands
               if not isinstance(command, CreateAccount)}
        ids.difference_update(self._recent)
        if ids:
            found = self._store.get_many(ids)
            self._fetched = {i: found.get(i) for i in ids}

    def apply(self, entry: LogEntry, delta: Delta) -> list[Result]:
        """Apply one committed entry, recording changed rows in `delta`; a result per command."""
        self._upto = entry.index
        if not isinstance(entry.payload, Commands):
            return []
        return [self._apply_command(c, entry.index, entry.ts, delta)
                for c in entry.payload.commands]

    def _apply_command(self, command: Command, index: LogIndex, ts: Timestamp, delta: Delta,
                       ) -> Result:
        problem = validate(command)
        if problem:
            kind = "account" if isinstance(command, CreateAccount) else "transfer"
            return Result(kind=kind, id=command.id, status=Status.INVALID, index=index,
                          detail=problem, ts=ts if kind == "transfer" else None)
        match command:
            case CreateAccount():
                return self._create_account(command, index, delta)
            case Transfer():
                return self._transfer(command, index, ts, delta)
            case PayerTransfer(transfer=transfer):
                return self._transfer(transfer, index, ts, delta, payer=True)
            case _:
                assert_never(command)

    def _create_account(self, command: CreateAccount, index: LogIndex, delta: Delta) -> Result:
        existing = self._accounts.get(command.id)
        if existing is not None:
            same = (existing.currency, existing.allow_negative) == (
                command.currency, command.allow_negative)
            return Result(kind="account", id=command.id,
                          status=Status.OK if same else Status.ID_CONFLICT, index=existing.index,
                          detail="" if same else "account exists with different attributes")
        account = Account(id=command.id, currency=command.currency,
                          allow_negative=command.allow_negative, balance=0, index=index)
        self._accounts[command.id] = account
        self._totals.setdefault(account.currency, 0)
        self._dirty.add(account.id)
        self._export_bytes += _account_size(account)
        delta.accounts[command.id] = account
        return Result(kind="account", id=command.id, status=Status.OK, index=index)

    def _transfer(self, transfer: Transfer, index: LogIndex, ts: Timestamp, delta: Delta, *,
                  payer: bool = False) -> Result:
        previous = self.transfer(transfer.id)
        if previous is not None:
            if previous.transfer == transfer:
                return Result(kind="transfer", id=transfer.id, status=previous.status,
                              index=previous.index, ts=previous.ts)
            return Result(kind="transfer", id=transfer.id, status=Status.ID_CONFLICT,
                          index=previous.index, detail="transfer id used with a different body",
                          ts=previous.ts)
        status = self._decide(transfer, payer=payer)
        self._record(TransferRecord(transfer=transfer, status=status, index=index, ts=ts), delta)
        if status is Status.OK:
            debit, credit = self._accounts[transfer.debit], self._accounts[transfer.credit]
            self._move(debit, -transfer.amount)
            self._move(credit, transfer.amount)
            delta.accounts[debit.id] = debit
            delta.accounts[credit.id] = credit
        return Result(kind="transfer", id=transfer.id, status=status, index=index, ts=ts)

    def _record(self, record: TransferRecord, delta: Delta) -> None:
        """Keep a newly decided transfer (in memory until its row is durable)."""
        self._recent[record.transfer.id] = record
        self._count += 1
        if self._store is None:
            self._unfolded.append(record)
        delta.transfers.append(record)

    def _decide(self, transfer: Transfer, *, payer: bool = False) -> Status:
        debit = self._accounts.get(transfer.debit)
        credit = self._accounts.get(transfer.credit)
        if debit is None or credit is None:
            return Status.ACCOUNT_NOT_FOUND
        if not debit.currency == credit.currency == transfer.currency:
            return Status.CURRENCY_MISMATCH
        if payer and debit.allow_negative:
            return Status.FORBIDDEN
        if debit.balance - transfer.amount < 0 and not debit.allow_negative:
            return Status.INSUFFICIENT_FUNDS
        if debit.balance - transfer.amount < -MAX_BALANCE or (
                credit.balance + transfer.amount > MAX_BALANCE):
            return Status.INVALID  # would leave the representable range; deterministic everywhere
        return Status.OK

    def _move(self, account: Account, amount: int) -> None:
        """Change a balance, and the totals with it; the digest hashes the row at its next fold."""
        account.balance += amount
        self._totals[account.currency] += amount
        self._dirty.add(account.id)

    def totals(self) -> dict[str, int]:
        """The sum of balances per currency: zero for every currency while money is conserved.
        Kept as balances change: O(currencies); `recount_totals` adds the balances up."""
        return dict(self._totals)

    def recount_totals(self) -> dict[str, int]:
        """`totals`, from every account's balance (O(accounts))."""
        sums: dict[str, int] = {}
        for account in self._accounts.values():
            sums[account.currency] = sums.get(account.currency, 0) + account.balance
        return sums

    def digest(self) -> str:
        """A hash of the whole state, equal on two replicas exactly when their states are equal
        (but with negligible probability): the sum, modulo 2**256, of a SHA-256 hash per row
        (each account, each decided transfer) -- a multiset hash (Bellare and Micciancio's
        AdHash), so the order rows were written in does not matter, and it is kept by folding
        in what changed since the last digest: it costs the rows changed since, not the state.
        With a store, the stored transfers' part is the store's, kept as it writes them."""
        fold = self.fold()
        digest = fold.compute()
        fold.merge(self)
        return digest

    def fold(self) -> DigestFold:
        """Capture what changed since the last fold: `compute` (which reads only what was
        captured, immutable records and the store's rows up to a fixed index, so it may run in a
        worker thread while the ledger goes on) returns the digest as of the capture; `merge`
        then keeps its sums here. Until merged, nothing is taken away: a fold never merged is
        as if never made. One at a time."""
        rows = [(a.id, _account_row(a)) for a in map(self._accounts.__getitem__, self._dirty)]
        stored = None
        if self._store is not None:  # the store's sum is as of its applied index: add the rest
            stored_sum, upto = self._store.digest_sum()
            if self._installing is not None and upto < self._installing[1]:
                stored_sum, upto = self._installing[0].digest, self._installing[1]
            stored = (stored_sum, [r for r in self._recent.values() if r.index > upto])
        return DigestFold(generation=self._generation, base=self._sum, records=self._unfolded,
                          count=len(self._unfolded), rows=rows, stored=stored,
                          folded={i: self._folded.get(i, 0) for i, _ in rows})

    def recount(self) -> Callable[[], str]:
        """Capture what `recount_digest` reads (the accounts' rows, the transfers held in
        memory); the function returned computes it from those and the store's rows up to the
        entry applied now, so it may run in a worker thread while the ledger goes on."""
        rows = [_account_row(a) for a in self._accounts.values()]
        store, upto, recent = self._store, self._upto, list(self._recent.values())

        def compute() -> str:
            total = sum(map(_row_hash, rows))
            total += sum(map(record_hash, _records(store, upto, recent)))
            return f"{total % MODULUS:064x}"
        return compute

    def recount_digest(self) -> str:
        """`digest`, from every row (O(state)): what a deep check compares it with."""
        return self.recount()()


class _TransfersView(Mapping[TransferId, TransferRecord]):
    """A ledger's decided transfers by id, looked up in memory or in its store."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __getitem__(self, transfer_id: TransferId) -> TransferRecord:
        record = self._ledger.transfer(transfer_id)
        if record is None:
            raise KeyError(transfer_id)
        return record

    def __iter__(self) -> Iterator[TransferId]:
        return (record.transfer.id for record in self._ledger.records())

    def __len__(self) -> int:
        return self._ledger.transfer_count


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedSums:
    """The decided transfers a snapshot staged in a store: their count, encoded size (as
    `record_size`) and digest (`record_hash` summed modulo 2**256)."""

    count: int
    size: int
    digest: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSource:
    """A ledger after entry `index`, read in parts: its accounts and its transfers not yet
    durable, copied when the snapshot began; the others are in the store, which only ever
    adds rows, so those with index <= `index` are exactly the rest whenever a part is read."""

    index: LogIndex
    accounts: tuple[AccountRow, ...]
    held: tuple[TransferRow, ...]  # in id order
    store: StoredTransfers | None

    def read(self, after: TransferId | None, limit: int) -> tuple[list[TransferRow], bool]:
        """Up to `limit` transfers after id `after` (None: from the first), in id order --
        read from the store, and copied, merged -- and whether they are the last. May run in
        a worker thread (the store reads through a connection of its own)."""
        ids = [r.id for r in self.held]
        low = 0 if after is None else bisect.bisect_right(ids, after)
        if self.store is None:
            return list(self.held[low:low + limit]), low + limit >= len(ids)
        stored = self.store.chunk(after, self.index, limit)
        exhausted = len(stored) < limit
        high = len(ids) if exhausted else bisect.bisect_right(ids, stored[-1].id)
        copied = self.held[low:high]
        if copied:
            seen = {r.id for r in copied}
            stored = list(heapq.merge((r for r in stored if r.id not in seen), copied,
                                      key=_row_id))
        return stored[:limit], exhausted and len(stored) <= limit


def _records(store: StoredTransfers | None, upto: LogIndex, recent: list[TransferRecord],
             ) -> Iterator[TransferRecord]:
    """The stored rows up to `upto` and the records held in memory, in id order, each once."""
    held = sorted(recent, key=_record_id)
    if store is None:
        return iter(held)
    ids = {r.transfer.id for r in held}
    stored = (r for r in store.scan(upto) if r.transfer.id not in ids)
    return heapq.merge(stored, held, key=_record_id)


def _record_id(record: TransferRecord) -> str:
    return record.transfer.id


def _row_id(row: TransferRow) -> str:
    return row.id


def record_of(t: TransferRow) -> TransferRecord:
    return TransferRecord(transfer=Transfer(id=t.id, debit=t.debit, credit=t.credit,
                                            amount=t.amount, currency=t.currency),
                          status=t.status, index=t.index, ts=Timestamp(t.wall_ms, t.logical))


MODULUS = 2**256


def _str_size(text: str) -> int:
    """A msgpack str: ids and currencies are ASCII (validated), so a byte per character."""
    return len(text) + (1 if len(text) < 32 else 2 if len(text) < 256 else 3)


def _int_size(value: int) -> int:
    """A non-negative msgpack int (negative ones are at most 9 bytes too)."""
    return 1 if 0 <= value < 128 else 2 if 0 <= value < 256 else 3 if 0 <= value < 65536 \
        else 5 if 0 <= value < 2**32 else 9


def _account_size(a: Account) -> int:
    """An AccountRow, its balance at its largest."""
    return 1 + _str_size(a.id) + _str_size(a.currency) + 1 + 9 + _int_size(a.index)


TransferValues = tuple[str, str, str, int, str, Status, int, int, int]


def record_values(r: TransferRecord) -> TransferValues:
    """A decided transfer's fields in a TransferRow's (and the transfers table's) order."""
    t = r.transfer
    return (t.id, t.debit, t.credit, t.amount, t.currency, r.status, r.index, r.ts.wall_ms,
            r.ts.logical)


def record_size(r: TransferRecord) -> int:
    """A decided transfer's size as a TransferRow, encoded."""
    return _transfer_size(*record_values(r))


def row_size(t: TransferRow) -> int:
    """A TransferRow, encoded."""
    return _transfer_size(*msgspec.structs.astuple(t))


def _transfer_size(transfer_id: str, debit: str, credit: str, amount: int, currency: str,
                   status: Status, index: int, wall_ms: int, logical: int) -> int:
    return (1 + _str_size(transfer_id) + _str_size(debit) + _str_size(credit)
            + _int_size(amount) + _str_size(currency) + _str_size(status.value)
            + _int_size(index) + _int_size(wall_ms) + _int_size(logical))


def transfer_row(r: TransferRecord) -> TransferRow:
    t = r.transfer
    return TransferRow(t.id, t.debit, t.credit, t.amount, t.currency, r.status, r.index,
                       r.ts.wall_ms, r.ts.logical)


@dataclass(slots=True, kw_only=True)
class DigestFold:
    """The rows changed since a ledger's last fold, captured (see `Ledger.fold`)."""

    generation: int
    base: int  # the ledger's sum before this fold
    records: list[TransferRecord]  # the ledger's unfolded records: the first `count` are ours
    count: int
    rows: list[tuple[AccountId, str]]  # accounts changed since, as rows at the fold
    folded: dict[AccountId, int]  # those accounts' hashes in `base` (0: none yet)
    # with a store: its transfers' hash sum and the transfers decided since (not merged)
    stored: tuple[int, list[TransferRecord]] | None
    total: int | None = None
    hashes: dict[AccountId, int] = field(default_factory=dict)

    def compute(self) -> str:
        total = self.base + sum(record_hash(r) for r in islice(self.records, self.count))
        for account_id, row in self.rows:
            self.hashes[account_id] = _row_hash(row)
            total += self.hashes[account_id] - self.folded[account_id]
        self.total = total % MODULUS
        if self.stored is not None:
            stored_sum, since = self.stored
            total += stored_sum + sum(map(record_hash, since))
        return f"{total % MODULUS:064x}"

    def merge(self, ledger: Ledger) -> None:
        """Keep the computed sums in `ledger` (in its thread), unless it was replaced or
        folded meanwhile. An account changed since the fold stays to be folded again."""
        if self.total is None or ledger._generation != self.generation \
                or ledger._sum != self.base or ledger._unfolded is not self.records:
            return
        ledger._sum = self.total
        ledger._folded.update(self.hashes)
        del ledger._unfolded[:self.count]
        for account_id, row in self.rows:
            if _account_row(ledger._accounts[account_id]) == row:
                ledger._dirty.discard(account_id)


def _account_row(a: Account) -> str:
    return f"A|{a.id}|{a.currency}|{int(a.allow_negative)}|{a.balance}|{a.index}"


def _row_hash(row: str) -> int:
    return int.from_bytes(hashlib.sha256(row.encode()).digest())


def _account_hash(a: Account) -> int:
    return _row_hash(_account_row(a))


def record_hash(r: TransferRecord) -> int:
    """A decided transfer's hash in the ledger digest."""
    return _transfer_hash(*record_values(r))


def row_hash(t: TransferRow) -> int:
    """`record_hash`, from its row."""
    return _transfer_hash(*msgspec.structs.astuple(t))


def _transfer_hash(transfer_id: str, debit: str, credit: str, amount: int, currency: str,
                   status: Status, index: int, wall_ms: int, logical: int) -> int:
    return _row_hash(f"T|{transfer_id}|{debit}|{credit}|{amount}|{currency}|{status}"
                     f"|{index}|{wall_ms}|{logical}")
