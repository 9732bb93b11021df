"""Protocol timing in ticks. The driver alone knows how long a tick is in seconds."""

from __future__ import annotations

from dataclasses import dataclass

from quorapay.core.errors import LocalError


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    heartbeat_ticks: int = 2  # leader sends a heartbeat to every follower this often
    retransmit_ticks: int = 4  # resend to a follower that made no progress for this long
    election_timeout_ticks: int = 40  # a leader without a majority this long steps down
    max_append_weight: int = 2048  # about this many commands per Append or FetchReply
    max_inflight: int = 16  # unacknowledged Appends per follower
    max_apply_batch: int = 4096  # committed entries handed out per Ready
    snapshot_retry_ticks: int = 20  # resend an unacknowledged snapshot after this long
    snapshot_chunk_rows: int = 2000  # accounts or transfers per part of a streamed snapshot
    snapshot_window: int = 4  # parts of a snapshot sent ahead of the receiver's acknowledgement
    snapshot_bytes_per_tick: int = 0  # the most each snapshot stream sends a tick (0: no limit)
    clock_probe_ticks: int = 5  # every node measures every peer's clock offset this often
    max_clock_offset_ms: int = 500  # the bound on clock offsets the cluster runs within
    handover_ticks: int = 200  # a switchover whose target has not caught up by then gives up
    # a follower that heard nothing from its leader this long asks the others; if a majority
    # agrees, the leader is deposed in ZooKeeper (0: never; wait for its session to expire)
    silence_ticks: int = 0
    # committed entries' ledger rows wait this long for a log write to go with them (one
    # transaction and fsync for both): a follower's entries, a leader's apply-only writes;
    # 0 writes every batch at once
    apply_hold_ticks: int = 2
    # a leader whose oldest write has been in flight this long steps down: writes are
    # pipelined, so its heartbeats go on while its disk hangs and nobody else could tell
    write_stall_ticks: int = 200
    # a recovering leader that received no entries and no snapshot this long gives up
    # leadership: another node may recover the log (a source whose snapshot cannot reach it)
    recovery_stall_ticks: int = 400

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_ticks <= self.retransmit_ticks < self.election_timeout_ticks:
            raise LocalError(
                "need 0 < heartbeat_ticks <= retransmit_ticks < election_timeout_ticks")
        if self.snapshot_retry_ticks < self.retransmit_ticks:
            raise LocalError("need snapshot_retry_ticks >= retransmit_ticks")
        if self.clock_probe_ticks < 1 or self.max_clock_offset_ms < 1:
            raise LocalError("clock_probe_ticks and max_clock_offset_ms must be positive")
        if self.silence_ticks and self.silence_ticks <= self.retransmit_ticks:
            raise LocalError("need silence_ticks > retransmit_ticks (or 0: off)")
        if self.snapshot_bytes_per_tick < 0:
            raise LocalError("snapshot_bytes_per_tick must not be negative")
        if self.apply_hold_ticks < 0:
            raise LocalError("apply_hold_ticks must not be negative")
        if self.write_stall_ticks <= self.election_timeout_ticks:
            raise LocalError("need write_stall_ticks > election_timeout_ticks")
        if self.recovery_stall_ticks <= 4 * self.snapshot_retry_ticks:
            raise LocalError("need recovery_stall_ticks > 4 * snapshot_retry_ticks")
        if self.handover_ticks < 1:
            raise LocalError("handover_ticks must be positive")
        if min(self.max_append_weight, self.max_inflight, self.max_apply_batch,
               self.snapshot_chunk_rows, self.snapshot_window) < 1:
            raise LocalError("batch limits must be positive")
