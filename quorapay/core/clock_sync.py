"""How far each peer's wall clock is from ours, measured NTP-style, and whether ours is off.

Every node probes every peer every few ticks. A probe carries our wall-clock reading when we
sent it (t0); the echo carries the peer's reading after it received the probe (t1); we read
our clock again after the echo arrived (t2). The peer's offset (its clock minus ours) then lies
in [t1 - t2, t1 - t0]: the estimate is the middle, the error half the round trip. Of the last
few samples of a peer (about a second's worth) the one with the shortest round trip is the best
bound, the newest among equals, so a clock that jumps is seen within a second.

A node whose clock is *certainly* (estimate minus error) off by more than the maximum offset
from so many peers that the rest, with it, cannot make a majority, is skewed: it raises an
alarm, takes no leadership, and a leader in that state steps down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from quorapay.core.messages import ClockEcho, ClockProbe
from quorapay.core.types import Epoch, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetSample:
    """A peer's clock minus ours: within `offset_ms` +- `error_ms` when measured at `tick`."""

    offset_ms: float
    error_ms: float
    tick: int

    @property
    def lower_bound_ms(self) -> float:
        """How far off the peer's clock certainly is (0 if it may agree with ours)."""
        return max(0.0, abs(self.offset_ms) - self.error_ms)


class ClockSync:
    def __init__(self, peers: Sequence[NodeId], *, quorum: int, max_offset_ms: int,
                 probe_ticks: int, window: int = 4) -> None:
        self._peers = tuple(peers)
        self._max_offset_ms = max_offset_ms
        self._probe_ticks = probe_ticks
        # off from this many peers, the rest and this node cannot make a majority
        self._off_needed = len(peers) + 1 - quorum + 1
        self._samples: dict[NodeId, deque[OffsetSample]] = {p: deque(maxlen=window)
                                                            for p in peers}
        self._stale_ticks = 2 * window * probe_ticks

    def due(self, tick: int) -> bool:
        return tick % self._probe_ticks == 0

    def probes(self, epoch: Epoch, wall_ms: int) -> list[tuple[NodeId, ClockProbe]]:
        probe = ClockProbe(epoch=epoch, sent_ms=wall_ms)
        return [(peer, probe) for peer in self._peers]

    @staticmethod
    def echo(probe: ClockProbe, epoch: Epoch, wall_ms: int) -> ClockEcho:
        return ClockEcho(epoch=epoch, probe_ms=probe.sent_ms, echo_ms=wall_ms)

    def on_echo(self, sender: NodeId, echo: ClockEcho, wall_ms: int, tick: int) -> None:
        samples = self._samples.get(sender)
        if samples is None or wall_ms < echo.probe_ms:
            return  # not a peer, or our clock jumped back during the round trip: no bound
        round_trip = wall_ms - echo.probe_ms
        samples.append(OffsetSample(offset_ms=echo.echo_ms - (echo.probe_ms + wall_ms) / 2,
                                    error_ms=round_trip / 2, tick=tick))

    def offset(self, peer: NodeId, tick: int) -> OffsetSample | None:
        """The best recent measurement of `peer`'s offset, or None if there is none."""
        fresh = [s for s in self._samples.get(peer, ()) if tick - s.tick <= self._stale_ticks]
        return min(fresh, key=lambda s: (s.error_ms, -s.tick)) if fresh else None

    def offsets(self, tick: int) -> dict[NodeId, OffsetSample]:
        return {p: s for p in self._peers if (s := self.offset(p, tick)) is not None}

    def off_peers(self, tick: int) -> list[NodeId]:
        """The peers whose clocks are certainly more than the maximum offset from ours."""
        return [p for p, s in self.offsets(tick).items()
                if s.lower_bound_ms > self._max_offset_ms]

    def skewed(self, tick: int) -> bool:
        """Whether this node's clock is off from a majority of the cluster."""
        return bool(self._peers) and len(self.off_peers(tick)) >= self._off_needed
