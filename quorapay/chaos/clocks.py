"""Clock faults: a node's wall clock moved by an offset, a drift rate, or a strobe.

`quorapay chaos skew` and `strobe` write one small JSON file per node under the run directory;
the node watches it and changes its wall clock at once (`quorapay.node.clock`). Scheduling never
uses the wall clock, so only what the node believes the time is moves. `heal` removes the files:
each node goes back to the clock its cluster file gives it.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from quorapay.core.errors import QuorapayError
from quorapay.files import write_private


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


def skew_path(run_dir: Path, node: str) -> Path:
    return run_dir / "clocks" / f"{node}.json"


def read_skew(path: Path) -> ClockSkew | None:
    """The fault in force for a node, None if there is none; ClockFaultError if unreadable."""
    try:
        skew = msgspec.json.decode(path.read_bytes(), type=ClockSkew)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise ClockFaultError(f"cannot read clock fault {path}: {exc}") from None
    problem = skew.problem()
    if problem is not None:
        raise ClockFaultError(f"clock fault {path}: {problem}")
    return skew


def write_skew(path: Path, skew: ClockSkew) -> None:
    """Atomically: a node never reads half a file."""
    write_private(path, msgspec.json.encode(skew))


def clear_skews(run_dir: Path) -> list[str]:
    """Remove every clock fault; return the nodes that had one."""
    folder = run_dir / "clocks"
    cleared = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    for node in cleared:
        (folder / f"{node}.json").unlink(missing_ok=True)
    return cleared


def active_skews(run_dir: Path) -> dict[str, ClockSkew]:
    folder = run_dir / "clocks"
    found: dict[str, ClockSkew] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            skew = read_skew(path)
        except ClockFaultError:
            continue
        if skew is not None:
            found[path.stem] = skew
    return found
