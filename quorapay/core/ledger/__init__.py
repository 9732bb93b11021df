"""The ledger: the deterministic payment state machine (`Ledger`), its data (`model`), its rows
as snapshots and digests see them (`rows`) and its command kinds (`commands`)."""

from quorapay.core.ledger.commands import validate
from quorapay.core.ledger.ledger import DigestFold, Ledger, SnapshotSource
from quorapay.core.ledger.model import (
    ACCOUNT_FLAGS,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    MAX_AMOUNT,
    MAX_BALANCE,
    Account,
    AccountRow,
    Delta,
    Expiring,
    LedgerState,
    Result,
    StagedSums,
    Status,
    TransferRecord,
    TransferRow,
)
from quorapay.core.ledger.rows import (
    MODULUS,
    account_row,
    record_hash,
    record_of,
    record_size,
    record_values,
    row_size,
    transfer_row,
    transfer_row_hash,
)

__all__ = [
    "ACCOUNT_FLAGS",
    "CREDITS_MUST_NOT_EXCEED_DEBITS",
    "DEBITS_MUST_NOT_EXCEED_CREDITS",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "MODULUS",
    "Account",
    "AccountRow",
    "Delta",
    "DigestFold",
    "Expiring",
    "Ledger",
    "LedgerState",
    "Result",
    "SnapshotSource",
    "StagedSums",
    "Status",
    "TransferRecord",
    "TransferRow",
    "account_row",
    "record_hash",
    "record_of",
    "record_size",
    "record_values",
    "row_size",
    "transfer_row",
    "transfer_row_hash",
    "validate",
]
