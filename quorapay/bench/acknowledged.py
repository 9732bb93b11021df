"""After a benchmark: is every transfer a client was told "ok" in the ledger, as sent?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from quorapay.api.schema import MAX_BATCH, TransferSpec
from quorapay.config import ClusterConfig
from quorapay.security.access import cluster_client

LOOKERS = 4  # concurrent lookups


@dataclass(frozen=True, slots=True, kw_only=True)
class AckCheck:
    acknowledged: int
    found: int  # in the ledger as sent
    missing: int  # acknowledged, but not in the ledger
    different: int  # in the ledger, but not as sent
    examples: list[str] = field(default_factory=list)  # a few ids missing or different

    @property
    def valid(self) -> bool:
        return self.found == self.acknowledged


async def check_acknowledged(cluster: ClusterConfig, sent: Sequence[TransferSpec]
                             ) -> AckCheck:
    """Look every acknowledged transfer up (linearizable reads, through the leader)."""
    missing: list[str] = []
    different: list[str] = []
    found = 0
    chunks = [sent[i:i + MAX_BATCH] for i in range(0, len(sent), MAX_BATCH)]

    async def looker(share: list[Sequence[TransferSpec]]) -> None:
        nonlocal found
        async with cluster_client(cluster, deadline=60) as client:
            for chunk in share:
                records = {r.id: r for r in await client.transfers([s.id for s in chunk])}
                for spec in chunk:
                    record = records.get(spec.id)
                    if record is None:
                        missing.append(spec.id)
                    elif (record.status, record.debit, record.credit, record.amount) != \
                            ("ok", spec.debit, spec.credit, spec.amount):
                        different.append(spec.id)
                    else:
                        found += 1

    async with trio.open_nursery() as nursery:
        for n in range(min(LOOKERS, len(chunks))):
            nursery.start_soon(looker, chunks[n::LOOKERS])
    return AckCheck(acknowledged=len(sent), found=found, missing=len(missing),
                    different=len(different), examples=(missing + different)[:10])
