"""Log lines: both formats parse back to what was logged; every record carries UTC ms times."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from quorapay.logs.lines import LineFormatter, LogLine, parse_line, utc_time


def record(message: str = "hello %s", *args: object, fields: dict[str, object] | None = None,
           exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("quorapay.node.roles", logging.WARNING, __file__, 1, message, args,
                             exc_info)
    made.created = 1_795_000_000.123456
    if fields is not None:
        made.fields = fields
    return made


def test_utc_time_is_iso_with_milliseconds_and_sorts_as_text() -> None:
    assert utc_time(1_795_000_000.123456) == "2026-11-18T11:06:40.123Z"
    assert utc_time(9.5) < utc_time(10.25) < utc_time(100.0)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_formatted_line_parses_back(fmt: str) -> None:
    text = LineFormatter("n2", fmt).format(record("took %s s", 0.25, fields={"epoch": 7}))
    line = parse_line(text)
    assert line is not None
    assert (line.time, line.node, line.level, line.logger, line.message) == (
        "2026-11-18T11:06:40.123Z", "n2", "WARNING", "quorapay.node.roles", "took 0.25 s")
    assert line.fields == ({"epoch": 7} if fmt == "json" else {})


def test_json_lines_are_one_object_with_the_exception_in_fields() -> None:
    text = LineFormatter("n1", "json").format(record(exc=True))
    assert "\n" not in text
    decoded = json.loads(text)
    assert "RuntimeError: boom" in decoded["fields"]["exception"]


def test_text_keeps_a_traceback_on_the_following_lines() -> None:
    first, *rest = LineFormatter("n1", "text").format(record(exc=True)).splitlines()
    assert parse_line(first) is not None
    assert rest and all(parse_line(line) is None for line in rest)


def test_other_lines_are_not_records() -> None:
    for text in ["", "Traceback (most recent call last):", "error: port 7601 in use",
                 "{not json", '{"time": 1}', "2026-11-29 12:35:11,123 n1 INFO x: old format"]:
        assert parse_line(text) is None


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        LineFormatter("n1", "xml")


def test_text_of_a_line() -> None:
    line = LogLine(time="2026-11-29T00:00:00.000Z", node="n3", level="INFO", logger="a.b",
                   message="m", fields={"x": 1})
    assert line.text() == "2026-11-29T00:00:00.000Z n3 INFO a.b: m"
