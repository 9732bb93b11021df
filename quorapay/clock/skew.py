"""How far a node's wall clock is from the machine's: an offset, a drift rate, a strobe.

A cluster file may give a node a skew (`clock_offset`, `clock_drift`), and an override file may
change it at runtime (`quorapay.clock.overrides`). Scheduling never uses the wall clock, so only
what the node believes the time is moves.
"""

from __future__ import annotations

import re

import msgspec

from quorapay.core.errors import QuorapayError


class ClockSkew(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How far a node's wall clock is from the machine's, from when it was set.

    The clock reads: machine time + offset + drift accumulated since set, and with a strobe it
    jumps between +strobe_ms and -strobe_ms around that, every strobe_period_s seconds.
    """

    offset_ms: int = 0
    drift_ppm: float = 0.0
    strobe_ms: int = 0
    strobe_period_s: float = 1.0

    def problem(self) -> str | None:
        """What makes this fault unusable, if anything (files are written by hand too)."""
        if abs(self.offset_ms) > MAX_SKEW_MS or not 0 <= self.strobe_ms <= MAX_SKEW_MS:
            return "offsets and strobe amplitudes are at most a day"
        if abs(self.drift_ppm) > MAX_DRIFT_PPM:
            return f"drift is at most {MAX_DRIFT_PPM:g} ppm"
        if self.strobe_period_s < 0.01:
            return "a strobe period is at least 10ms"
        return None

    def describe(self) -> str:
        parts = [f"offset {self.offset_ms:+d} ms"]
        if self.drift_ppm:
            parts.append(f"drift {self.drift_ppm:+g} ppm")
        if self.strobe_ms:
            parts.append(f"strobe ±{self.strobe_ms} ms every {self.strobe_period_s:g} s")
        return ", ".join(parts)


class ClockFaultError(QuorapayError):
    """A clock fault that cannot be applied as given."""


_DURATION = re.compile(r"([+-]?)(\d+(?:\.\d+)?)(ms|s|m)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, None: 1000}
_PPM = re.compile(r"([+-]?\d+(?:\.\d+)?)(ppm)?")
MAX_SKEW_MS = 24 * 3600 * 1000
MAX_DRIFT_PPM = 100_000.0  # 10 %: a clock that far off is broken, not drifting


def parse_offset(text: str) -> int:
    """'+2s', '-10s', '250ms', '1.5' (seconds) -> milliseconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ClockFaultError(f"{text!r} is not a clock offset like +2s, -500ms or 1.5s")
    sign, number, unit = match.groups()
    value = round(float(number) * _UNIT_MS[unit]) * (-1 if sign == "-" else 1)
    if abs(value) > MAX_SKEW_MS:
        raise ClockFaultError(f"{text!r} is more than a day: not a clock offset")
    return value


def parse_drift(text: str) -> float:
    """'100ppm', '-50' -> parts per million."""
    match = _PPM.fullmatch(text.strip())
    if match is None or abs(float(match.group(1))) > MAX_DRIFT_PPM:
        raise ClockFaultError(f"{text!r} is not a drift rate like 100ppm or -50ppm (at most "
                              f"{MAX_DRIFT_PPM:g})")
    return float(match.group(1))
