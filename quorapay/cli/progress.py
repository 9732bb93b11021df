"""Progress of long commands, on the terminal: rich's progress display on stderr, refreshed in
place -- and nothing at all with --json or when stderr is not a terminal (a pipe, a file, CI),
so that output stays machine-readable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Shown:
    """One line of progress: update its count and its text as work goes."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task

    def update(self, *, completed: float | None = None, text: str | None = None,
               total: float | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, object] = {}
        if text is not None:
            fields["description"] = text
        self._progress.update(self._task, completed=completed, total=total,
                              **fields)  # type: ignore[arg-type]


def shown(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


@contextmanager
def progress(text: str, *, total: float | None, as_json: bool, counted: bool = True
             ) -> Iterator[Shown]:
    """A progress line for the duration (a bar with a count and an ETA when `total` is known
    and `counted`; a spinner and the elapsed time otherwise)."""
    if not shown(as_json):
        yield Shown(None, None)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None and counted:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as display:
        task = display.add_task(text, total=total)
        yield Shown(display, task)
