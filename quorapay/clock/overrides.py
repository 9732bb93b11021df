"""The clock source a node is given: a small JSON file per node under the run directory that,
while it exists, overrides the node's configured wall-clock skew (`quorapay.node.clock` follows it).

Whoever may write the run directory may move a node's clock: the chaos verbs (`quorapay chaos
skew`, `strobe`, `heal`) are one such writer. The file is written atomically, so a node never reads
half of one, and is checked (`ClockSkew.problem`) before it is applied.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from quorapay.clock.skew import ClockFaultError, ClockSkew
from quorapay.files import write_private


def skew_path(run_dir: Path, node: str) -> Path:
    return run_dir / "clocks" / f"{node}.json"


def read_skew(path: Path) -> ClockSkew | None:
    """The fault in force for a node, None if there is none; ClockFaultError if unreadable."""
    try:
        skew = msgspec.json.decode(path.read_bytes(), type=ClockSkew)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a DecodeError, or bad UTF-8 msgspec lets through
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
