"""Bad input of any kind: one clear error line, a non-zero exit, no traceback, nothing changed."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from quorapay.cli.main import cli
from quorapay.cluster.ports import free_ports
from quorapay.config import _KEYS, default_cluster, load_config, render
from quorapay.security.issue import ensure_secrets


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    output = result.output  # stdout and stderr, as a terminal shows them
    assert "Traceback" not in output, output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}")
    return result.exit_code, output


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def local_config(tmp_path: Path, *, secrets: bool = True, **changes: object) -> Path:
    document = default_cluster()
    ports = free_ports(2 * len(document["nodes"]), avoid={document["zookeeper"]["port"]})
    for node in document["nodes"]:  # (drawn together: never one port twice)
        node["peer_port"], node["client_port"] = ports.pop(), ports.pop()
    document["zookeeper"].update(changes)
    document["timing"]["request_timeout"] = 0.5
    path = write(tmp_path / "cluster.toml", render(document))
    if secrets:
        ensure_secrets(load_config(path))
    return path


def free_port() -> int:
    return free_ports(1)[0]


def test_missing_cluster_file_says_how_to_make_one(tmp_path: Path) -> None:
    code, output = invoke("-c", str(tmp_path / "nope.toml"), "status")
    assert code == 1
    assert "not found (create one with `quorapay init`)" in output


def test_invalid_toml_is_one_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[cluster\nname = ")
    code, output = invoke("-c", str(path), "status")
    assert code == 1
    assert "is not valid TOML" in output


def test_every_problem_of_a_cluster_file_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
[zookeeper]
mode = "cloud"
session_timeout = "long"
[[nodes]]
id = "n1"
peer_port = 7001
client_port = 7001
[[nodes]]
id = "n1"
peer_port = 70000
""")
    code, output = invoke("-c", str(path), "up")
    assert code == 1
    assert output.count("\n") == 1  # one line
    for problem in ('zookeeper.mode must be "local" or "external"',
                    "zookeeper.session_timeout must be a number, not 'long'",
                    "nodes[1].peer_port must be a TCP port",
                    "node id n1 is used more than once",
                    "port 7001 on 127.0.0.1 is used more than once (n1 peer_port, n1 client_port)"):
        assert problem in output


@pytest.mark.parametrize(("text", "problem"), [
    ('[cluster]\nnmae = "x"\n[[nodes]]\nid = "n1"\n', "unknown key cluster.nmae"),
    ('[[nodes]]\nid = "n1"\nhost = "not a host"\n', "nodes[0].host 'not a host' is not"),
    ('[zookeeper]\nmode = "external"\nhosts = ["garbage"]\n[[nodes]]\nid = "n1"\n',
     "zookeeper.hosts entry 'garbage' is not \"host:port\""),
    ('[zookeeper]\nport = 7101\n[[nodes]]\nid = "n1"\npeer_port = 7101\n',
     "zookeeper port 7101 is also a port of node n1"),
    ('[[nodes]]\nid = "n1"\nclock_offset = "soon"\n',
     "nodes[0]: 'soon' is not a clock offset like +2s"),
    ('[timing]\nmax_clock_offset = 0\n[[nodes]]\nid = "n1"\n',
     "timing.max_clock_offset must be between"),
    ('[cluster]\nname = ".."\n[[nodes]]\nid = "n1"\n', "not starting with a dot"),
    ('[logging]\nformat = "xml"\n[[nodes]]\nid = "n1"\n',
     'logging.format must be "text" or "json"'),
    ('[logging]\nlevel = "LOUD"\n[[nodes]]\nid = "n1"\n',
     "logging.level must be one of DEBUG, INFO, WARNING, ERROR"),
    ('[storage]\ncache_mb = 0\n[[nodes]]\nid = "n1"\n', "storage.cache_mb must be from 1"),
    ('[storage]\nsnapshot_part_rows = 0\n[[nodes]]\nid = "n1"\n',
     "storage.snapshot_part_rows must be from 1"),
    ('[storage]\nsnapshot_mb_per_s = -1\n[[nodes]]\nid = "n1"\n',
     "storage.snapshot_mb_per_s must be 0 (no limit) or positive"),
    ('[storage]\nsnapshot_mb_per_s = nan\n[[nodes]]\nid = "n1"\n',
     "storage.snapshot_mb_per_s must be 0 (no limit) or positive"),
    ('[storage]\nmax_log_commands = -1\n[[nodes]]\nid = "n1"\n',
     "storage.max_log_commands must be 0 (no bound) or positive"),
])
def test_cluster_file_mistakes_are_named(tmp_path: Path, text: str, problem: str) -> None:
    code, output = invoke("-c", str(write(tmp_path / "c.toml", text)), "status")
    assert code == 1
    assert problem in output


def test_init_writes_a_valid_file_and_will_not_overwrite_it(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    assert invoke("-c", str(path), "init", "--nodes", "5")[0] == 0
    code, output = invoke("-c", str(path), "init")
    assert code == 1
    assert "exists (use --force" in output


def test_init_writes_every_key_and_each_cluster_gets_its_own_dirs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    assert invoke("-c", str(a), "init", "--zookeeper-servers", "3", "--log-format", "json")[0] == 0
    code, output = invoke("-c", str(b), "init", "--name", "other", "--no-proxies",
                          "--zookeeper-hosts", "zk1.example:2181, zk2.example:2181")
    assert code == 0 and "external ZooKeeper at zk1.example:2181,zk2.example:2181" in output
    written = tomllib.loads(a.read_text())
    for table, keys in _KEYS.items():
        if table == "node":
            assert all(set(node) == keys - {"listen_client_port", "routes", "clock_offset",
                                            "clock_drift"} for node in written["nodes"])
        else:
            assert set(written.get(table, written) if table else written) == keys, table
    first, second = load_config(a), load_config(b)
    assert (first.zookeeper.servers, first.logging.format, first.proxies) == (3, "json", True)
    assert (second.zookeeper.mode, second.zookeeper.hosts, second.proxies) == (
        "external", ("zk1.example:2181", "zk2.example:2181"), False)
    dirs = [{c.run_dir, c.security.secrets_dir, *(n.data_dir for n in c.nodes)}
            for c in (first, second)]
    assert not any(x == y or x in y.parents or y in x.parents
                   for x in dirs[0] for y in dirs[1])


def test_init_creates_the_secrets_and_secrets_only_completes_them(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    code, output = invoke("-c", str(path), "init")
    assert code == 0 and "created 13 file(s)" in output
    secrets = tmp_path / ".quorapay" / "quorapay-local" / "secrets"
    assert {p.name for p in (secrets / "nodes").iterdir()} == {
        "n1.pem", "n1.key", "n2.pem", "n2.key", "n3.pem", "n3.key"}
    for item in secrets.rglob("*"):
        assert item.stat().st_mode & 0o077 == 0, item  # 0600 files, 0700 dirs
    (secrets / "nodes" / "n2.key").unlink()
    code, output = invoke("-c", str(path), "init", "--secrets-only")
    assert code == 0 and "created 2 file(s)" in output
    code, output = invoke("-c", str(path), "init", "--secrets-only")
    assert code == 0 and "all present" in output


def test_a_cluster_without_secrets_says_how_to_make_them(tmp_path: Path) -> None:
    path = local_config(tmp_path, secrets=False)
    code, output = invoke("-c", str(path), "up")
    assert code == 1
    assert "missing" in output and "init --secrets-only" in output
    assert not (load_config(path).run_dir / "pids").exists()
    code, output = invoke("-c", str(path), "pay", "a", "b", "5")
    assert code == 1 and "init --secrets-only" in output


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = local_config(tmp_path)
    key = tmp_path / ".quorapay" / "quorapay-local" / "secrets" / "clients" / "operator.key"
    key.chmod(0o644)
    code, output = invoke("-c", str(path), "balance", "a")
    assert code == 1 and "readable by other users" in output and "chmod 600" in output


def test_an_unknown_credential_names_the_known_ones(tmp_path: Path) -> None:
    code, output = invoke("-c", str(local_config(tmp_path)), "--credential", "nosuch",
                          "balance", "a")
    assert code == 1
    assert "no client credential 'nosuch'" in output and "operator, payer" in output


def test_init_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    code, output = invoke("-c", str(path), "init", "--name", "bad name")
    assert code == 1
    assert "cluster.name must be" in output
    assert not path.exists()
    code, output = invoke("-c", str(tmp_path / "no" / "dir" / "c.toml"), "init")
    assert code == 1
    assert "cannot write" in output


def test_unknown_node_names_the_known_ones(tmp_path: Path) -> None:
    code, output = invoke("-c", str(local_config(tmp_path)), "node", "run", "--node", "nosuch")
    assert code == 1
    assert "no node 'nosuch'" in output
    assert "n1, n2, n3" in output


@pytest.mark.parametrize(("args", "problem"), [
    (("skew", "n1", "banana"), "'banana' is not a clock offset like +2s"),
    (("skew", "n1", "+2s", "--drift", "fast"), "'fast' is not a drift rate like 100ppm"),
    (("skew", "n9", "+2s"), "no node 'n9'"),
    (("strobe", "n1", "--period", "1ms"), "--period must be at least 10ms"),
])
def test_clock_faults_are_checked_before_anything_changes(
        tmp_path: Path, args: tuple[str, ...], problem: str) -> None:
    config = local_config(tmp_path)
    code, output = invoke("-c", str(config), "chaos", *args)
    assert code == 1 and problem in output, output
    assert not (tmp_path / ".quorapay" / "quorapay-local" / "run" / "clocks").exists()


@pytest.mark.parametrize("amount", ["ten", "1.5"])
def test_amount_must_be_an_integer(tmp_path: Path, amount: str) -> None:
    code, output = invoke("-c", str(local_config(tmp_path)), "pay", "a", "b", amount)
    assert code == 2
    assert "is not a valid integer" in output


def test_unreachable_external_zookeeper_is_reported_before_starting_nodes(tmp_path: Path) -> None:
    path = local_config(tmp_path, mode="external", hosts=[f"127.0.0.1:{free_port()}"])
    code, output = invoke("-c", str(path), "up")
    assert code == 1
    assert "ZooKeeper unreachable at" in output
    assert not (load_config(path).run_dir / "pids").exists()


def test_commands_against_a_cluster_that_is_down_fail_cleanly(tmp_path: Path) -> None:
    path = local_config(tmp_path)
    code, output = invoke("-c", str(path), "status")
    assert code == 2  # no leader
    rows = [line for line in output.splitlines() if line.startswith(("n1 ", "n2 ", "n3 "))]
    assert len(rows) == 3 and all(" down " in row for row in rows), output
    assert "NO LEADER: no node serves; 0 of 3 nodes ok" in output
    assert "Traceback" not in output
    code, output = invoke("-c", str(path), "pay", "alice", "bob", "5", "--id", "t1")
    assert code == 1
    assert "no node answered at" in output
    assert "is the cluster running? (`quorapay up` starts it)" in output


def test_a_node_whose_port_is_taken_exits_with_one_line(tmp_path: Path) -> None:
    path = local_config(tmp_path)
    text = path.read_text()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        first_peer_port = text.split("peer_port = ")[1].split("\n")[0]
        path.write_text(text.replace(f"peer_port = {first_peer_port}", f"peer_port = {port}", 1))
        done = subprocess.run([sys.executable, "-m", "quorapay", "-c", str(path), "node", "run",
                               "--node", "n1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"peer port {port} on 127.0.0.1 is already in use (node n1)" in done.stderr
    assert "Traceback" not in done.stderr


def test_sim_runs_a_seed_and_rejects_unknown_faults() -> None:
    code, output = invoke("sim", "--seed", "5", "--steps", "2000", "--workers", "1")
    assert code == 0
    assert "violations: 0 seed(s)" in output
    assert "trace hash: " in output
    code, output = invoke("sim", "--seeds", "2", "--faults", "kill,meteor")
    assert code == 2
    assert "unknown fault(s) meteor" in output


def test_secrets_of_another_cluster_are_refused_not_mixed(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    assert invoke("-c", str(path), "init", "--name", "first")[0] == 0
    text = path.read_text().replace('name = "first"', 'name = "second"')
    second = write(tmp_path / "second.toml", text)  # pointing at first's secrets dir
    for command in (["init", "--secrets-only"], ["up"]):
        code, output = invoke("-c", str(second), *command)
        assert code == 1
        assert "belong to cluster 'first', not 'second'" in output
    assert not (tmp_path / ".quorapay" / "second").exists()  # nothing made


def test_a_missing_operator_credential_is_one_line_everywhere(tmp_path: Path) -> None:
    path = local_config(tmp_path)
    (tmp_path / ".quorapay" / "quorapay-local" / "secrets" / "clients" / "operator.pem").unlink()
    for command in (["status"], ["up"]):
        code, output = invoke("-c", str(path), *command)
        assert code == 1, output
        assert "operator" in output and ("init --secrets-only" in output
                                         or "--role operator" in output), output
    assert not (load_config(path).run_dir / "pids").exists()  # up started nothing


def test_a_secrets_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    path = local_config(tmp_path, secrets=False)
    (tmp_path / ".quorapay" / "quorapay-local").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".quorapay" / "quorapay-local" / "secrets").write_text("a file, not a dir")
    code, output = invoke("-c", str(path), "init", "--secrets-only")
    assert code == 1 and "cannot write the secrets" in output


def test_a_node_id_with_a_double_underscore_is_refused(tmp_path: Path) -> None:
    text = render(default_cluster()).replace('id = "n1"', 'id = "a__b"')
    code, output = invoke("-c", str(write(tmp_path / "c.toml", text)), "status")
    assert code == 1 and 'must not contain "__"' in output


def test_files_of_the_shared_layout_are_not_hidden_by_a_fresh_start(tmp_path: Path) -> None:
    path = local_config(tmp_path, secrets=False)
    (tmp_path / ".quorapay" / "run" / "pids").mkdir(parents=True)  # where every cluster's were
    for command in ("up", "down"):
        code, output = invoke("-c", str(path), command)
        assert code == 1 and "before each cluster got its own folder" in output, output
    assert not (tmp_path / ".quorapay" / "quorapay-local").exists()
