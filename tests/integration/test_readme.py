"""The README's "Using it" section, run as written -- in order, on one cluster -- as a new user
would. Commands compose: a workload, a failover, faults, a bank check and a verification follow
one another without a fresh cluster. (Two figures shrink to fit CI: `check bank --time 60`
becomes 15 s and `sim --seeds 1000` 10 seeds; the cluster file has free ports and a 2 s ZooKeeper
session, so that the failover fits too.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from quorapay.cluster import supervisor
from quorapay.config import load_config
from tests.integration.helpers import local_cluster_file

pytestmark = pytest.mark.integration
README = Path(__file__).parents[2] / "README.md"
SHRINK = {"--time 60": "--time 15", "--seeds 1000": "--seeds 10", "--seconds 5": "--seconds 1",
          "--kills 5": "--kills 1"}


def using_it() -> list[str]:
    """The commands of the README's "Using it" block, in order (comments and PATH set-up out)."""
    section = README.read_text().split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        code = line.split("#", 1)[0].strip()
        if not code or code.startswith("export "):
            continue
        commands += [part.strip() for part in code.split(";") if part.strip()]
    return commands


def test_the_readme_sequence_runs_in_order_on_one_cluster(tmp_path: Path) -> None:
    local_cluster_file(tmp_path, name="readme", secrets=False)  # init makes them, as written
    env = dict(os.environ, QUORAPAY_CONFIG=str(tmp_path / "cluster.toml"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    commands = using_it()
    assert commands[:2] == ["quorapay init --secrets-only", "quorapay up"]
    try:
        for command in commands:
            for long, short in SHRINK.items():
                command = command.replace(long, short)
            done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr, f"{command}: {done.stderr}"
    finally:
        cluster = load_config(tmp_path / "cluster.toml")
        supervisor.down(cluster)
        for node in cluster.nodes:
            assert supervisor.node_process(cluster, node).pid() is None
