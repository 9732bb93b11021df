"""Client API, version 1: every request and response as a typed msgspec Struct.

Requests are JSON objects tagged by "op" and carry a client-chosen "req" number that the
response echoes. A response has either its op's result fields or an "error". Field names and
codes here are the stable contract documented in docs/01-api/.
"""

from __future__ import annotations

import msgspec

from quorapay.core.node_state import ErrorCode
from quorapay.core.types import LogEntry

__all__ = ["ErrorCode"]  # defined in the core, part of this contract

API_VERSION = 1
MAX_BATCH = 1000  # commands per request


class LeaderHint(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    url: str


class Error(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: ErrorCode
    message: str
    retryable: bool
    leader: LeaderHint | None = None


# ---------------------------------------------------------------------------- requests

# Account limits (`flags` of an account): without `flags`, every account but an issuer
# (allow_negative) keeps its debits within its credits.
DEBITS_MUST_NOT_EXCEED_CREDITS = "debits_must_not_exceed_credits"  # balance >= 0
CREDITS_MUST_NOT_EXCEED_DEBITS = "credits_must_not_exceed_debits"  # balance <= 0
ACCOUNT_FLAGS = (DEBITS_MUST_NOT_EXCEED_CREDITS, CREDITS_MUST_NOT_EXCEED_DEBITS)
# Transfer flags: move at most `amount`, as much as the debit (credit) account's limit allows
BALANCING_DEBIT = "balancing_debit"
BALANCING_CREDIT = "balancing_credit"
PENDING = "pending"  # reserve the amount until posted, voided or expired (timeout_ms)
POST_PENDING = "post_pending"  # post the pending transfer pending_id (all, or amount of it)
VOID_PENDING = "void_pending"  # release the pending transfer pending_id
TRANSFER_FLAGS = (BALANCING_DEBIT, BALANCING_CREDIT, PENDING, POST_PENDING, VOID_PENDING)


class AccountSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                  omit_defaults=True):
    """An account to open. `flags` (names in ACCOUNT_FLAGS) sets its limits exactly; without
    it, `allow_negative` says whether it is an issuer (no limit) or keeps its debits within its
    credits."""

    id: str
    currency: str = "USD"
    allow_negative: bool = False
    flags: list[str] | None = None


class TransferSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   omit_defaults=True):
    """A transfer to submit. `linked`: it and the next transfer of the request belong to one
    chain, applied all or nothing (the last of a chain is not linked). `flags`: names in
    TRANSFER_FLAGS. debit, credit and amount are required but for a post or void, which
    names its pending transfer (`pending_id`) and may leave them out (amount: all of it); a
    post or void is in its pending transfer's currency, whatever `currency` says."""

    id: str
    debit: str | None = None
    credit: str | None = None
    amount: int | None = None
    currency: str = "USD"
    flags: list[str] = []
    linked: bool = False
    pending_id: str | None = None
    timeout_ms: int | None = None  # a pending transfer: expire this long after its entry


class _Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="op",
               forbid_unknown_fields=True):
    req: int = 0


class CreateAccounts(_Request, frozen=True, tag="create_accounts"):
    accounts: list[AccountSpec]


class SubmitTransfers(_Request, frozen=True, tag="submit_transfers"):
    transfers: list[TransferSpec]


class CloseAccounts(_Request, frozen=True, tag="close_accounts"):
    """Operator: these accounts take part in no transfer until reopened."""

    accounts: list[str]


class ReopenAccounts(_Request, frozen=True, tag="reopen_accounts"):
    """Operator: closed accounts take part in transfers again."""

    accounts: list[str]


class Barrier(_Request, frozen=True, tag="barrier"):
    """Commit an empty entry: proves a leader can commit writes now."""


class GetBalances(_Request, frozen=True, tag="get_balances"):
    """Linearizable: served by the leader after confirming leadership with a majority."""

    accounts: list[str]


class GetTransfers(_Request, frozen=True, tag="get_transfers"):
    """Linearizable lookup of decided transfers by id."""

    ids: list[str]


class Status(_Request, frozen=True, tag="status"):
    """This node's view of itself and the cluster. Served by any node, not linearizable."""


class Digest(_Request, frozen=True, tag="digest"):
    """Hashes of this node's committed log after `after` up to `upto` (default: applied), and
    of its ledger state at `upto`. `after` must not be below the node's log start. Costs the
    entries since the last digest; `deep` also replays the log and recounts the ledger."""

    upto: int | None = None
    after: int | None = None  # default: the node's log start
    deep: bool = False


class EntryDigests(_Request, frozen=True, tag="entry_digests"):
    """Per-entry hashes of this node's applied log, `first`..`last`, to locate a divergence."""

    first: int
    last: int


class LocalTransfers(_Request, frozen=True, tag="local_transfers"):
    """This node's own records of these transfers (not linearizable; for verification)."""

    ids: list[str]


class Entries(_Request, frozen=True, tag="entries"):
    """This node's applied log entries `first`..`last` (at most 1000), for replay by checkers."""

    first: int
    last: int


class Switchover(_Request, frozen=True, tag="switchover"):
    """Operator, to the leader: hand leadership to `to` (default: the most caught-up follower
    in contact). Answered once the leader has handed over -- it took no new request meanwhile
    and `to` holds every entry -- or has given up (UNAVAILABLE) and leads on."""

    to: str | None = None


Request = (CreateAccounts | SubmitTransfers | CloseAccounts | ReopenAccounts | Barrier
           | GetBalances | GetTransfers | Status | Digest | EntryDigests | LocalTransfers
           | Entries | Switchover)


# ---------------------------------------------------------------------------- responses

class CommandResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Outcome of one account or transfer. `index` is the log entry that decided it."""

    id: str
    status: str  # ok, or a failure: see docs/01-api for every code
    index: int | None = None
    detail: str | None = None
    timestamp: str | None = None  # transfers: the deciding entry's timestamp, ISO 8601 UTC
    logical: int | None = None  # and its logical counter
    moved: int | None = None  # balancing transfers: the amount moved


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    currency: str
    balance: int  # credits posted minus debits posted
    allow_negative: bool  # an issuer: no debits_must_not_exceed_credits limit
    flags: list[str] = []  # its limits (names in ACCOUNT_FLAGS)
    closed: bool = False
    debits_pending: int = 0  # reserved by pending transfers
    credits_pending: int = 0


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    status: str
    index: int
    timestamp: str = ""  # the deciding entry's timestamp, ISO 8601 UTC ...
    logical: int = 0  # ... and its logical counter
    flags: list[str] = []  # as submitted (names in TRANSFER_FLAGS)
    moved: int = 0  # the amount moved: amount, less for a balancing transfer, 0 if it failed
    # (a pending transfer: reserved; a post: posted)
    pending_id: str = ""  # a post or void: the pending transfer it names
    timeout_ms: int = 0  # a pending transfer: it expires this long after its entry's timestamp


class PeerClock(msgspec.Struct, frozen=True, kw_only=True):
    """A peer's wall clock minus this node's, measured: within offset_ms +- error_ms."""

    offset_ms: float
    error_ms: float  # half the probe's round trip


class ClockStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a node knows about time."""

    wall: str  # its wall clock, ISO 8601 UTC
    injected_offset_ms: int  # how far that clock is from the machine's (a fault or config)
    fault: str  # the clock fault or configured skew in force, described ("" if none)
    hlc: str  # its hybrid logical clock: wall-clock part, ISO 8601 UTC
    hlc_logical: int
    max_offset_ms: int
    alarm: bool  # off from a majority of the cluster by more than max_offset_ms
    hlc_ahead: bool  # its HLC is more than max_offset_ms ahead of its wall clock: not standing
    peers: dict[str, PeerClock]
    refusing: list[str]  # peers whose messages it refuses now: sent by a clock too far ahead
    refused: int  # messages refused for that since start
    unadopted: int  # timestamps too far ahead of its clock, not adopted, since start


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    role: str  # follower | recovering | leader
    serving: bool
    epoch: int  # the highest epoch this node has promised
    leader: str | None
    last_index: int
    commit_index: int
    applied_index: int
    log_start: int  # the log was compacted up to here: entries after it are held
    zookeeper: str  # CONNECTED | SUSPENDED | LOST | CONNECTING
    zookeeper_leader: str | None
    clock: ClockStatus | None = None
    tls: bool = True  # false only in an insecure benchmark: no TLS, no credentials
    zookeeper_warning: str | None = None  # the latest oddity found in ZooKeeper (garbage, NoAuth)
    commit_wall_ms: int = 0  # the timestamp (wall part) of the entry at the commit index
    applied_wall_ms: int = 0  # ... and of the entry at the applied index
    leader_contact_ms: int | None = None  # a follower: since it last heard from its leader
    majority_contact_ms: int | None = None  # a leader: since a majority last answered
    accounts: int = 0  # in its ledger
    transfers: int = 0  # decided transfers in its ledger
    rss_bytes: int = 0  # the node process's resident memory
    snapshot_bytes: int = 0  # what its ledger would encode to in a snapshot (estimated)
    snapshots_sent: int = 0  # snapshot streams begun since the node started
    snapshots_resumed: int = 0  # times a stream was resent from the receiver's acknowledgement
    snapshots_installed: int = 0  # snapshots received whole and handed to the replica
    snapshot_streams: dict[str, SnapshotStream] = {}  # by peer: those being sent now


class SnapshotStream(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot this node is streaming to a peer."""

    index: int  # the ledger after applying this entry
    parts_acknowledged: int  # parts the peer holds durably
    parts: int | None  # parts in all, once the last is read (None: still reading)


class DigestInfo(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    index: int  # the digests describe the state after applying entries 1..index
    after: int = 0  # the log digest covers entries after+1..index
    log_start: int = 0  # the node's log was compacted up to here
    log_digest: str
    deep: bool = False  # the request was deep: state_digest and recounted_state_digest asked
    # deep only: of the ledger replayed from the log; None once it is compacted
    state_digest: str | None = None
    stored_state_digest: str | None  # of the live ledger (kept as it changes), at applied
    # deep only: the live ledger's digest recounted from its rows (must equal the stored one)
    recounted_state_digest: str | None = None
    totals: dict[str, int] | None  # sum of balances per currency: replayed, else live state
    # the first index in after+1..index whose timestamp is not above the one before it (None:
    # timestamps strictly increase with the index there)
    unordered_at: int | None = None


class SwitchoverInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A switchover done: `node` gave up leading `epoch` for `to`, after refusing new requests
    for `caught_up_ms` while `to` caught up. `to` claims the next epoch in ZooKeeper."""

    node: str
    to: str
    epoch: int
    caught_up_ms: int


class Response(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One response; which fields are set depends on the request's op."""

    req: int
    error: Error | None = None
    results: list[CommandResult] | None = None  # create_accounts, submit_transfers
    index: int | None = None  # writes: the entry that carried them; reads: the index they reflect
    epoch: int | None = None  # writes: that entry's epoch; reads: the confirming leader's epoch
    timestamp: str | None = None  # writes: that entry's timestamp, ISO 8601 UTC ...
    logical: int | None = None  # ... and its logical counter
    balances: list[Balance] | None = None
    transfers: list[TransferRecord] | None = None
    status: NodeStatus | None = None
    digest: DigestInfo | None = None
    entry_digests: list[str] | None = None
    entries: list[LogEntry] | None = None
    switchover: SwitchoverInfo | None = None


_request_decoder = msgspec.json.Decoder(Request)
_response_decoder = msgspec.json.Decoder(Response)
_encoder = msgspec.json.Encoder()


def decode_request(data: str | bytes) -> Request:
    """Raises msgspec.DecodeError (a ValidationError for well-formed JSON of the wrong shape)."""
    try:
        request: Request = _request_decoder.decode(data)
    except ValueError as exc:  # msgspec may let a UnicodeDecodeError through (bytes input)
        if isinstance(exc, msgspec.DecodeError):
            raise
        raise msgspec.DecodeError(f"undecodable: {exc}") from None
    return request


def decode_response(data: str | bytes) -> Response:
    try:
        response: Response = _response_decoder.decode(data)
    except ValueError as exc:
        if isinstance(exc, msgspec.DecodeError):
            raise
        raise msgspec.DecodeError(f"undecodable: {exc}") from None
    return response


def encode(message: Request | Response) -> bytes:
    return _encoder.encode(message)


def error(code: ErrorCode, message: str, leader: LeaderHint | None = None) -> Error:
    return Error(code=code, message=message, retryable=code.retryable, leader=leader)
