"""The deterministic payment state machine: double entry, integer minor units.

Owns accounts and the record of every decided transfer. Applying the same log in the same order
always produces the same results and the same state, on every replica. Pure: it never persists;
`apply` returns the rows that changed so the driver can write them in the same transaction that
advances the applied index. What each command does is in `quorapay.core.ledger.commands`.

Invariants: the balances of each currency sum to zero (money is created only by moving it out of
an issuer account that may go negative); a transfer id is decided once, and asking again returns
the original outcome; no account's balance passes the limits its flags set.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice

from quorapay.core.ledger.book import Book
from quorapay.core.ledger.commands import apply_command
from quorapay.core.ledger.commands.pending import expire, resolution_id
from quorapay.core.ledger.model import (
    Account,
    At,
    Delta,
    Expiring,
    LedgerState,
    Result,
    StagedSums,
    TransferRecord,
    TransferRow,
)
from quorapay.core.ledger.rows import (
    MODULUS,
    account_row,
    account_size,
    record_hash,
    record_of,
    record_size,
    row_hash,
    transfer_row,
)
from quorapay.core.stored import StoredTransfers
from quorapay.core.types import (
    AccountId,
    Command,
    Commands,
    Linked,
    LogEntry,
    LogIndex,
    PayerTransfer,
    Transfer,
    TransferId,
)


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
        expiring: Iterable[Expiring] = (),
    ) -> None:
        """`store` holds the transfers decided up to entry `stored_upto` (a node's disk);
        `expiring`, the pending transfers that wait to expire."""
        self._accounts = {a.id: a for a in accounts}
        # pending transfers waiting to expire, and a heap of (expires_ms, id) over them (an
        # entry whose transfer was resolved meanwhile is skipped when it comes up)
        self._expiring = {e.id: e for e in expiring}
        self._expiry_heap = sorted((e.expires_ms, e.id) for e in self._expiring.values())
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
        self._export_bytes = sum(map(account_size, self._accounts.values()))
        self._sized = 0
        self._generation = 0  # a fold planned before the ledger was replaced must not merge
        # a snapshot installed with its transfers staged in the store, until durable: what
        # the store will hold once it is (its count, size and digest), and as of which entry
        self._installing: tuple[StagedSums, LogIndex] | None = None

    @classmethod
    def from_state(cls, state: LedgerState) -> Ledger:
        return cls(state.accounts, map(record_of, state.transfers), expiring=state.expiring)

    @property
    def store(self) -> StoredTransfers | None:
        return self._store

    def export(self) -> LedgerState:
        """The whole state as data, rows in id order (with a store: reads every stored row)."""
        return LedgerState(
            accounts=tuple(sorted(self._accounts.values(), key=_account_id)),
            transfers=tuple(map(transfer_row, self.records())), expiring=self.expiring())

    def expiring(self) -> tuple[Expiring, ...]:
        """The pending transfers waiting to expire, in id order."""
        return tuple(sorted(self._expiring.values(), key=_expiring_id))

    def next_expiry(self) -> int | None:
        """When (the log's time, in ms) the next pending transfer expires; None: none waits."""
        heap = self._expiry_heap
        while heap and self._expiring.get(heap[0][1], _GONE).expires_ms != heap[0][0]:
            heapq.heappop(heap)  # resolved meanwhile
        return heap[0][0] if heap else None

    def records(self) -> Iterator[TransferRecord]:
        """Every decided transfer, in id order (with a store: reads every stored row)."""
        return _records(self._store, self._upto, list(self._recent.values()))

    def snapshot_source(self) -> SnapshotSource:
        """The ledger as it is now, after its last applied entry, to be read in parts (a
        streamed snapshot) while it goes on: the accounts and the transfers not yet durable
        are copied; the rest are read from the store when a part is built."""
        accounts = tuple(sorted(self._accounts.values(), key=_account_id))
        held = tuple(map(transfer_row, sorted(
            (r for r in self._recent.values() if r.index <= self._upto), key=_record_id)))
        return SnapshotSource(index=self._upto, accounts=accounts, held=held,
                              store=self._store, expiring=self.expiring())

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
        copied._accounts = dict(self._accounts)  # accounts are immutable
        copied._recent, copied._count, copied._upto = dict(self._recent), self._count, self._upto
        copied._totals = dict(self._totals)
        copied._sum, copied._folded = self._sum, dict(self._folded)
        copied._dirty, copied._unfolded = set(self._dirty), list(self._unfolded)
        copied._export_bytes, copied._sized = self._export_bytes, self._sized
        copied._expiring, copied._expiry_heap = dict(self._expiring), list(self._expiry_heap)
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
        self._expiring, self._expiry_heap = other._expiring, other._expiry_heap
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
        ids = {transfer_id for entry in entries if isinstance(entry.payload, Commands)
               for command in entry.payload.commands for transfer_id in _reads(command)}
        ids.difference_update(self._recent)
        if ids:
            found = self._store.get_many(ids)
            self._fetched = {i: found.get(i) for i in ids}

    def apply(self, entry: LogEntry, delta: Delta) -> list[Result]:
        """Apply one committed entry, recording changed rows in `delta`; a result per command."""
        self._upto = entry.index
        book, at = self._written(delta), At(entry.index, entry.ts)
        self._expire(book, at)
        if not isinstance(entry.payload, Commands):
            return []
        return [apply_command(c, book, at) for c in entry.payload.commands]

    def _expire(self, book: Book, at: At) -> None:
        """Expire, in order of (expiry, id), every pending transfer whose time has come by
        this entry's timestamp -- before its commands apply."""
        while (due := self.next_expiry()) is not None and due <= at.ts.wall_ms:
            _, transfer_id = heapq.heappop(self._expiry_heap)
            expire(self._expiring[transfer_id], book, at)

    def _written(self, delta: Delta) -> Written:
        """The ledger as the book its commands change, the rows they change kept in `delta`."""
        return Written(self, delta)

    def put(self, delta: Delta, account: Account) -> None:
        """Make `account` the current version of its id: a new account, or a changed one."""
        account_id = account.id
        old = self._accounts.get(account_id)
        self._accounts[account_id] = delta.accounts[account_id] = account
        if old is None:
            self._totals.setdefault(account.currency, 0)
            self._export_bytes += account_size(account)
            self._totals[account.currency] += account.balance
        elif old.balance != account.balance:
            self._totals[account.currency] += account.balance - old.balance
        self._dirty.add(account_id)

    def _record(self, delta: Delta, record: TransferRecord) -> None:
        """Keep a newly decided transfer (in memory until its row is durable)."""
        self._recent[record.transfer.id] = record
        self._count += 1
        if self._store is None:
            self._unfolded.append(record)
        delta.transfers.append(record)

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
        rows = [(a.id, account_row(a)) for a in map(self._accounts.__getitem__, self._dirty)]
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
        rows = [account_row(a) for a in self._accounts.values()]
        store, upto, recent = self._store, self._upto, list(self._recent.values())

        def compute() -> str:
            total = sum(map(row_hash, rows))
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
class SnapshotSource:
    """A ledger after entry `index`, read in parts: its accounts and its transfers not yet
    durable, copied when the snapshot began; the others are in the store, which only ever
    adds rows, so those with index <= `index` are exactly the rest whenever a part is read."""

    index: LogIndex
    accounts: tuple[Account, ...]
    held: tuple[TransferRow, ...]  # in id order
    store: StoredTransfers | None
    expiring: tuple[Expiring, ...] = ()

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
            self.hashes[account_id] = row_hash(row)
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
            if account_row(ledger._accounts[account_id]) == row:
                ledger._dirty.discard(account_id)


class Written:
    """The ledger as a `Book` its commands change directly, the rows changed kept in `delta`
    (`account` and `decided` are the ledger's own lookups: this is the hot path)."""

    __slots__ = ("_delta", "_ledger", "account", "decided", "put", "record")

    def __init__(self, ledger: Ledger, delta: Delta) -> None:
        self._ledger, self._delta = ledger, delta
        self.account: Callable[[AccountId], Account | None] = ledger._accounts.get
        self.decided: Callable[[TransferId], TransferRecord | None] = ledger.transfer
        self.put: Callable[[Account], None] = partial(ledger.put, delta)
        self.record: Callable[[TransferRecord], None] = partial(ledger._record, delta)

    def schedule(self, expiring: Expiring) -> None:
        self._ledger._expiring[expiring.id] = expiring
        heapq.heappush(self._ledger._expiry_heap, (expiring.expires_ms, expiring.id))
        self._delta.expiring[expiring.id] = expiring

    def unschedule(self, transfer_id: TransferId) -> None:
        if self._ledger._expiring.pop(transfer_id, None) is not None:
            self._delta.expiring[transfer_id] = None


def _reads(command: Command) -> Iterator[TransferId]:
    """The decided transfers applying a command may read (what a prefetch reads): the ids it
    decides, and for a post or void the pending transfer and its resolution."""
    match command:
        case Transfer(id=transfer_id, pending_id=pending_id):
            yield transfer_id
            if pending_id:
                yield pending_id
                yield resolution_id(pending_id)
        case PayerTransfer(transfer=transfer):
            yield from _reads(transfer)
        case Linked(commands=members):
            for member in members:
                yield from _reads(member)


def _account_id(account: Account) -> str:
    return account.id


def _expiring_id(expiring: Expiring) -> str:
    return expiring.id


_GONE = Expiring(TransferId(""), -1, AccountId(""), AccountId(""), 0, "")  # not waiting
