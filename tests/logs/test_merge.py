"""`quorapay logs` underneath: records of several files merged by time, tracebacks kept with
their record, lines from before logging started kept, filters, and following a growing file."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quorapay.logs.lines import LogLine
from quorapay.logs.merge import LogsError, Tail, merged, read_records, since_time

T = "2026-11-29T12:00:0{}.000Z"


def text(second: int, node: str, message: str, level: str = "INFO") -> str:
    return f"{T.format(second)} {node} {level} quorapay.x: {message}\n"


def json_line(second: int, node: str, message: str) -> str:
    return (f'{{"time":"{T.format(second)}","node":"{node}","level":"INFO",'
            f'"logger":"quorapay.x","message":"{message}","fields":{{"epoch":3}}}}\n')


def test_files_in_either_format_merge_by_time(tmp_path: Path) -> None:
    (tmp_path / "n1.log").write_text(text(1, "n1", "a") + text(4, "n1", "d"))
    (tmp_path / "n2.log").write_text(json_line(2, "n2", "b") + json_line(3, "n2", "c"))
    lines = list(merged({"n1": tmp_path / "n1.log", "n2": tmp_path / "n2.log",
                         "n3": tmp_path / "missing.log"}))
    assert [(line.node, line.message) for line in lines] == [
        ("n1", "a"), ("n2", "b"), ("n2", "c"), ("n1", "d")]
    assert lines[1].fields == {"epoch": 3}


def test_a_traceback_stays_with_its_record_and_early_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "n1.log"
    path.write_text("Usage: something printed before logging\n"
                    + text(1, "n1", "failed", "ERROR")
                    + "Traceback (most recent call last):\n  File x\nValueError: bad\n"
                    + text(2, "n1", "next"))
    lines = list(read_records("n1", path))
    assert [line.message.splitlines()[0] for line in lines] == [
        "Usage: something printed before logging", "failed", "next"]
    assert lines[0].time == lines[1].time  # at the time of the record that followed
    assert lines[0].logger == "stderr"
    assert lines[1].message.endswith("ValueError: bad")


def test_a_log_of_stray_lines_only_is_kept_at_the_files_time(tmp_path: Path) -> None:
    path = tmp_path / "n1.log"
    path.write_text("error: port 7601 is already in use\n")
    os.utime(path, (1_795_000_000, 1_795_000_000))
    [line] = read_records("n1", path)
    assert (line.time, line.message) == ("2026-11-18T11:06:40.000Z",
                                         "error: port 7601 is already in use")


def test_since_and_level_filter(tmp_path: Path) -> None:
    path = tmp_path / "n1.log"
    path.write_text(text(1, "n1", "a", "WARNING") + text(2, "n1", "b") + text(3, "n1", "c",
                                                                                "ERROR"))
    assert [x.message for x in merged({"n1": path}, since=T.format(2))] == ["b", "c"]
    assert [x.message for x in merged({"n1": path}, level="WARNING")] == ["a", "c"]


def test_since_takes_a_duration_or_a_time() -> None:
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert since_time("90s", now) == "2026-11-29T11:58:30.000Z"
    assert since_time("2h", now) == "2026-11-29T10:00:00.000Z"
    assert since_time("1.5m", now) == "2026-11-29T11:58:30.000Z"
    assert since_time("2026-11-29T11:00:00") == "2026-11-29T11:00:00.000Z"
    assert since_time("2026-11-29T12:00:00+01:00") == "2026-11-29T11:00:00.000Z"
    for bad in ["", "yesterday", "5 parsecs", "-3m"]:
        with pytest.raises(LogsError, match="--since"):
            since_time(bad, now)


def test_tail_reads_what_is_added_and_starts_over_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "n1.log"
    tail = Tail("n1", path)
    assert tail.records() == []  # no file yet
    path.write_text(text(1, "n1", "a"))
    assert messages(tail.records()) == []  # held: a traceback may follow
    assert messages(tail.records()) == ["a"]  # nothing followed: released
    with path.open("a") as file:
        file.write(text(2, "n1", "b") + "  half a li")
    assert messages(tail.records()) == []
    with path.open("a") as file:
        file.write("ne\n" + text(3, "n1", "c"))
    assert messages(tail.records()) == ["b\n  half a line"]
    path.write_text(text(4, "n1", "d"))  # truncated: a new log
    assert messages(tail.records()) == ["c"]
    assert messages(tail.records()) == ["d"]


def messages(lines: list[LogLine]) -> list[str]:
    return [line.message for line in lines]


def test_a_line_being_written_waits_and_a_crash_shows_at_any_level(tmp_path: Path) -> None:
    path = tmp_path / "n1.log"
    path.write_text(text(1, "n1", "serving") + "Traceback (most recent call last):\n"
                    "  File x\nSystemExit: boom\n" + text(2, "n1", "half writ")[:-1])
    [crash] = list(merged({"n1": path}, level="WARNING"))
    assert crash.message.startswith("serving\nTraceback") and crash.level == "INFO"
    assert "half writ" not in crash.message
