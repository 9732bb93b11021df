"""The port through which a ledger reads the decided transfers kept on disk.

A node's ledger keeps its accounts in memory and its decided transfers on disk: every transfer
id must be recognised forever (idempotency), and a ledger of tens of millions of transfers must
not need their memory. The ledger holds in memory only the transfers decided and not yet known
durable; for the rest it asks this port -- the node's SQLite store (`quorapay.node.storage`),
the simulator's store on its simulated disk, or nothing at all (a ledger without a store keeps
every transfer in memory: tests, replays, the simulator's reference).

Reads see only durable rows, and rows are only ever added (a snapshot installed replaces the
rows by a superset), so the rows with `index <= n`, for any n the ledger has applied, are
exactly the transfers decided by entry n: that is how a scan gets a consistent view while the
ledger goes on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Protocol

from quorapay.core.types import LogIndex, TransferId

if TYPE_CHECKING:
    from quorapay.core.ledger import TransferRecord, TransferRow


class StoredTransfers(Protocol):
    def get_many(self, ids: Collection[TransferId]) -> dict[TransferId, TransferRecord]:
        """The durable decided transfers among `ids` (one query for all of them)."""

    def scan(self, upto: LogIndex) -> Iterator[TransferRecord]:
        """Every durable decided transfer with index <= `upto`, in id order. May be called
        from a worker thread (it reads through a connection of its own)."""

    def chunk(self, after: TransferId | None, upto: LogIndex, limit: int
              ) -> list[TransferRow]:
        """Up to `limit` durable decided transfers with index <= `upto` and an id above
        `after` (None: from the first), in id order, as rows (a snapshot's form, checked as
        a peer's would be): a part of a snapshot. May be called from a worker thread, like
        `scan`."""

    def count(self) -> int:
        """How many decided transfers are durable."""

    def export_bytes(self) -> tuple[int, LogIndex]:
        """Their encoded size in a snapshot (`quorapay.core.ledger.record_size` summed), and
        the applied index it is as of."""

    def digest_sum(self) -> tuple[int, LogIndex]:
        """Their hashes (`quorapay.core.ledger.record_hash`) summed modulo 2**256, kept as
        they are written, and the applied index they are as of: the transfers decided by
        that entry are exactly the durable ones."""
