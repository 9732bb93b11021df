"""`quorapay logs`: the processes' logs merged by time, chosen by name, filtered, followed until
Ctrl-C -- on log files as the nodes write them, no cluster needed."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from quorapay.config import load_config
from tests.cli.test_bad_input import invoke, local_config

LINE = "2026-11-29T12:00:0{}.000Z {} INFO quorapay.node.roles: {}\n"


def logs_dir(config: Path) -> Path:
    folder = load_config(config).run_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_logs_merge_every_process_by_time_and_choose_by_name(tmp_path: Path) -> None:
    config = local_config(tmp_path, secrets=False)
    folder = logs_dir(config)
    (folder / "n1.log").write_text(LINE.format(1, "n1", "a") + LINE.format(3, "n1", "c"))
    (folder / "n2.log").write_text(
        '{"time":"2026-11-29T12:00:02.000Z","node":"n2","level":"WARNING","logger":"x",'
        '"message":"b","fields":{"epoch":4}}\n')
    (folder / "proxy.log").write_text(LINE.format(0, "proxy", "p"))
    code, output = invoke("-c", str(config), "logs")
    assert code == 0, output
    assert [line.split(": ", 1)[1] for line in output.splitlines()] == ["p", "a", "b", "c"]
    code, output = invoke("-c", str(config), "logs", "n2", "n1", "--json", "--level", "WARNING")
    assert code == 0, output
    assert [json.loads(line) for line in output.splitlines()] == [
        {"time": "2026-11-29T12:00:02.000Z", "node": "n2", "level": "WARNING", "logger": "x",
         "message": "b", "fields": {"epoch": 4}}]
    code, output = invoke("-c", str(config), "logs", "--since", "2026-11-29T12:00:02.5")
    assert code == 0 and output.splitlines() == [LINE.format(3, "n1", "c").rstrip()]


def test_bad_arguments_are_one_error(tmp_path: Path) -> None:
    config = local_config(tmp_path, secrets=False)
    code, output = invoke("-c", str(config), "logs")
    assert code == 1 and "no logs yet in" in output and "quorapay up" in output
    logs_dir(config).joinpath("n1.log").write_text(LINE.format(1, "n1", "a"))
    code, output = invoke("-c", str(config), "logs", "n9")
    assert code == 2 and "'n9': not a process of this cluster (n1, n2, n3, proxy)" in output
    code, output = invoke("-c", str(config), "logs", "--since", "last tuesday")
    assert code == 2 and "neither a duration" in output


def test_follow_prints_new_lines_as_they_come_until_ctrl_c(tmp_path: Path) -> None:
    config = local_config(tmp_path, secrets=False)
    folder = logs_dir(config)
    (folder / "n1.log").write_text(LINE.format(1, "n1", "before"))
    follow = subprocess.Popen([sys.executable, "-m", "quorapay", "-c", str(config), "logs",
                               "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert follow.stdout is not None
        assert read_line(follow.stdout.fileno()).endswith(b"before\n")
        with (folder / "n2.log").open("a") as file:
            file.write(LINE.format(2, "n2", "after"))
        assert read_line(follow.stdout.fileno()).endswith(b"after\n")
    finally:
        os.killpg(follow.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        _, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert b"Traceback" not in err


def read_line(fd: int, timeout: float = 30.0) -> bytes:
    """One line from a pipe, within `timeout` seconds (byte by byte: nothing buffered here)."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line within {timeout:g}s (got {line!r})"
        byte = os.read(fd, 1)
        assert byte, f"the pipe closed (got {line!r})"
        line += byte
    return line
