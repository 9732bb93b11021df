"""How timestamps are shown to people and clients: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=4096)  # every result of an entry shares its timestamp: format it once
def iso(wall_ms: int) -> str:
    """2026-11-27T01:02:03.456Z"""
    when = datetime.fromtimestamp(wall_ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
