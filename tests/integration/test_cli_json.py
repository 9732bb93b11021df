"""Every command's `--json` output has exactly the shape docs/01-api documents, on a real cluster;
the protocol's documented points hold for a raw websocket client written from docs/01-api; and
the chaos verbs take `leader` wherever they take a node, with `heal` undoing every fault it can
and naming what it left."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from quorapay.chaos import processes
from quorapay.cluster import supervisor
from quorapay.config import ClusterConfig
from quorapay.security.secrets import SecretsDir
from tests.integration.helpers import local_cluster_file

pytestmark = pytest.mark.integration
QUORAPAY = [sys.executable, "-m", "quorapay"]
API = Path(__file__).parents[2] / "docs" / "01-api" / "README.md"


def documented_shapes() -> dict[str, str]:
    """The CLI table of docs/01-api: each row's command cell -> its first JSON shape."""
    section = API.read_text().split("## The CLI and its `--json` output", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and (shape := re.search(r"`([\[{].*?[\]}])`", cells[1])):
            rows[cells[0]] = shape.group(1)
    return rows


def top_level(shape: str) -> tuple[str, set[str]]:
    """("object", its keys) or ("list", the keys of its items, if documented)."""
    kind = "object" if shape.startswith("{") else "list"
    body = shape[1:-1].strip()
    if kind == "list":
        return kind, top_level(body)[1] if body.startswith("{") else set()
    keys, depth, part = set(), 0, ""
    for char in body + ",":
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == "," and depth == 0:
            key = part.split(":", 1)[0].strip()
            if key and key != "...":
                keys.add(key)
            part = ""
        else:
            part += char
    return kind, keys


SHAPES = documented_shapes()


def check(row: str, value: Any) -> None:
    """`value` has the shape documented in the row whose command cell starts with `row`."""
    [cell] = [c for c in SHAPES if re.match(rf"`{re.escape(row)}[ `\\]", c)
              and not re.match(rf"`{re.escape(row)} [a-z]", c)]  # not a subcommand's row
    kind, keys = top_level(SHAPES[cell])
    if kind == "list":
        assert isinstance(value, list), (row, value)
        for item in value:
            assert not keys or set(item) == keys, (row, item, keys)
    else:
        assert isinstance(value, dict) and set(value) == keys, (row, sorted(value), sorted(keys))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[ClusterConfig]:
    cluster = local_cluster_file(tmp_path, name="clijson", log_format="json")
    yield cluster
    supervisor.down(cluster)
    for node in cluster.nodes:
        assert supervisor.node_process(cluster, node).pid() is None


def json_of(cluster: ClusterConfig, *args: str, code: int = 0) -> Any:
    done = subprocess.run([*QUORAPAY, "-c", str(cluster.path), *args, "--json"],
                          capture_output=True, text=True, timeout=300, cwd=cluster.path.parent)
    assert done.returncode == code, f"{args}: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout) if code == 0 or done.stdout else done.stderr


def leader_of(cluster: ClusterConfig) -> str:
    leader = supervisor.current_leader(trio.run(supervisor.statuses, cluster))
    assert leader is not None
    return leader.node


def _ledger_primitives(local: ClusterConfig) -> None:
    """Account limits, closing, a balancing transfer and a linked chain, from the CLI."""
    check("account create", json_of(local, "account", "create", "card", "--flag",
                                    "credits_must_not_exceed_debits"))
    assert json_of(local, "pay", "alice", "card", "1", code=1)[0]["status"] == "exceeds_debits"
    held = json_of(local, "balance", "alice")["balances"][0]["balance"]
    swept = json_of(local, "pay", "alice", "bank", "10000", "--balancing", "debit")
    check("pay", swept)
    assert swept[0]["moved"] == held and swept[0]["status"] == "ok"
    json_of(local, "pay", "bank", "alice", "300", "--id", "p2")
    failed = json_of(local, "chain", "alice:bank:200:c1", "alice:bank:200:c2",
                     "alice:bank:200:c3", code=1)
    check("chain", failed)
    assert [r["status"] for r in failed] == ["linked_event_failed", "insufficient_funds",
                                             "linked_event_failed"]
    check("chain", json_of(local, "chain", "alice:bank:200", "alice:bank:100"))
    check("account close", json_of(local, "account", "close", "alice"))
    assert json_of(local, "pay", "bank", "alice", "1", code=1)[0]["status"] == "account_closed"
    check("account close", json_of(local, "account", "reopen", "alice"))
    assert json_of(local, "balance", "alice")["balances"][0]["balance"] == 0
    check("pay", json_of(local, "pay", "bank", "alice", "700", "--pending", "--timeout", "60",
                         "--id", "hold"))
    assert json_of(local, "balance", "alice")["balances"][0]["credits_pending"] == 700
    check("post", posted := json_of(local, "post", "hold", "--amount", "200"))
    assert posted[0]["moved"] == 200
    check("void", json_of(local, "void", "hold", code=1))  # posted already
    assert json_of(local, "balance", "alice")["balances"][0]["balance"] == 200


def test_every_commands_json_has_its_documented_shape(local: ClusterConfig) -> None:
    check("up", up := json_of(local, "up"))
    check("up", again := json_of(local, "up"))
    assert again["started"] == [] and set(again["already_running"]) == set(up["started"])
    assert {"proxy", "zookeeper", "n1", "n2", "n3"} <= set(again["already_running"])
    check("status", json_of(local, "status"))
    check("credential issue", json_of(local, "credential", "issue", "app", "--role", "payer"))
    check("credential list", json_of(local, "credential", "list"))
    check("account create", json_of(local, "account", "create", "bank", "--allow-negative"))
    check("account create", json_of(local, "account", "create", "alice"))
    trio.run(_protocol_as_documented, local, leader_of(local))
    assert json_of(local, "transfer", "w-3", code=1)["transfers"] == []  # NOT_LEADER: not applied
    check("pay", json_of(local, "pay", "bank", "alice", "500", "--id", "p1"))
    check("balance", json_of(local, "balance", "alice"))
    check("transfer", json_of(local, "transfer", "p1"))
    _ledger_primitives(local)
    check("workload", json_of(local, "workload", "--transfers", "50"))
    check("switchover", json_of(local, "switchover"))
    check("chaos skew", json_of(local, "chaos", "skew", "leader", "+100ms"))
    check("chaos partition", json_of(local, "chaos", "delay", "leader", "zk", "10ms"))
    check("chaos status", json_of(local, "chaos", "status"))
    check("chaos heal", json_of(local, "chaos", "heal"))
    check("chaos zk kill", json_of(local, "chaos", "zk", "kill"))
    check("chaos zk kill", json_of(local, "chaos", "zk", "restart"))
    json_of(local, "up")  # waits until a leader serves again
    check("chaos kill-leader", json_of(local, "chaos", "kill-leader"))
    check("up", json_of(local, "up"))
    check("verify", json_of(local, "verify"))
    check("verify", json_of(local, "verify", "--deep"))
    check("check bank", json_of(local, "check", "bank", "--time", "3", "--results",
                                str(local.path.parent / "bank"), code=2))  # no fault in 3 s
    check("sim", json_of(local, "sim", "--seeds", "2", "--steps", "300"))
    shown = subprocess.run([*QUORAPAY, "-c", str(local.path), "logs", "--json", "n1"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout, shown.stderr
    for line in shown.stdout.splitlines():
        check("logs", json.loads(line))
    check("down", json_of(local, "down"))


async def _protocol_as_documented(cluster: ClusterConfig, leader: str) -> None:
    """docs/01-api, sent as raw JSON over a websocket with the operator's certificate."""
    secrets = SecretsDir(cluster.security.secrets_dir)
    tls = ssl.create_default_context(cafile=str(secrets.ca_cert))
    tls.load_cert_chain(str(secrets.client_cert("operator")), str(secrets.client_key("operator")))
    url = cluster.client_url(cluster.node(leader))
    with trio.fail_after(60):
        async with open_websocket_url(url, ssl_context=tls) as ws:
            async def ask(request: dict[str, Any]) -> dict[str, Any]:
                await ws.send_message(json.dumps({**request, "req": 1}))
                answer: dict[str, Any] = json.loads(await ws.get_message())
                assert answer["req"] == 1
                return answer

            pay = {"op": "submit_transfers", "transfers": [
                {"id": "w-1", "debit": "bank", "credit": "alice", "amount": 7},
                {"id": "w 2", "debit": "bank", "credit": "alice", "amount": 7}]}
            first, again = await ask(pay), await ask(pay)
            ok, invalid = first["results"]
            assert ok["status"] == "ok" and "detail" not in ok
            assert invalid["status"] == "invalid" and invalid["detail"]
            assert "index" not in invalid and "timestamp" not in invalid  # nothing recorded
            assert again["index"] > first["index"]  # the resend is a new entry ...
            assert again["results"][0]["index"] == ok["index"]  # ... deciding nothing new
            found = await ask({"op": "get_transfers", "ids": ["w-1", "never"]})
            assert [set(t) for t in found["transfers"]] == [{
                "id", "debit", "credit", "amount", "currency", "status", "index", "timestamp",
                "logical", "flags", "moved", "pending_id", "timeout_ms"}]
            shown = await ask({"op": "entries", "first": ok["index"], "last": again["index"]})
            entry = shown["entries"][0]
            assert set(entry) == {"index", "epoch", "payload", "ts"} and len(entry["ts"]) == 2
            assert entry["payload"]["type"] == "commands"
            assert entry["payload"]["commands"][0] == {
                "type": "transfer", "id": "w-1", "debit": "bank", "credit": "alice",
                "amount": 7, "currency": "USD"}
            digest = (await ask({"op": "digest", "after": ok["index"] - 1}))["digest"]
            assert set(digest) == {"node", "index", "after", "log_start", "deep", "log_digest",
                                   "state_digest", "stored_state_digest",
                                   "recounted_state_digest", "totals", "unordered_at"}
            assert digest["after"] == ok["index"] - 1 and digest["state_digest"] is None
            deep = (await ask({"op": "digest", "deep": True}))["digest"]
            assert deep["deep"] and deep["state_digest"] == deep["stored_state_digest"] \
                == deep["recounted_state_digest"] and len(deep["log_digest"]) == 64
    follower = next(n for n in cluster.nodes if n.id != leader)
    with trio.fail_after(60):
        async with open_websocket_url(cluster.client_url(follower), ssl_context=tls) as ws:
            await ws.send_message(json.dumps({**pay, "req": 2, "transfers": [
                {"id": "w-3", "debit": "bank", "credit": "alice", "amount": 7}]}))
            refused = json.loads(await ws.get_message())
    assert refused["error"]["code"] == "NOT_LEADER" and refused["error"]["retryable"]
    assert refused["error"]["leader"]["node"] == leader


def test_chaos_verbs_take_the_leader_and_heal_says_what_it_left(local: ClusterConfig) -> None:
    json_of(local, "up")
    leader = leader_of(local)
    isolated = json_of(local, "chaos", "isolate", "leader")
    assert isolated["changed"] and all(leader in change for change in isolated["changed"])
    assert set(json_of(local, "chaos", "heal")["changed"]) == set(isolated["changed"])
    # `leader` names the node serving now: wait for one after each fault (an isolated leader
    # may lose its office, and one cut from ZooKeeper stops serving within seconds)
    json_of(local, "up")
    assert json_of(local, "chaos", "partition", "leader")["changed"]
    json_of(local, "chaos", "heal")
    json_of(local, "up")
    assert json_of(local, "chaos", "isolate-zk", "leader")["changed"]
    json_of(local, "chaos", "heal")
    check("chaos kill", pause := json_of(local, "chaos", "pause", "leader"))
    paused = pause["node"]
    json_of(local, "up")  # another node leads
    assert (now_leading := leader_of(local)) != paused
    isolated = json_of(local, "chaos", "isolate", "leader")["changed"]
    assert isolated and all(now_leading in change for change in isolated)
    assert json_of(local, "chaos", "resume", "leader")["node"] == paused  # the one paused
    assert not processes.paused(local, local.node(paused))
    assert "no `chaos pause leader` to undo" in json_of(local, "chaos", "resume", "leader",
                                                          code=1)
    json_of(local, "chaos", "pause", paused)
    healed = json_of(local, "chaos", "heal")
    assert f"{paused} resumed" in healed["changed"] and healed["left"] == []
    assert set(isolated) <= set(healed["changed"])
    assert not processes.paused(local, local.node(paused))
    json_of(local, "up")  # a leader serves again
    check("chaos kill", kill := json_of(local, "chaos", "kill", "leader"))
    killed = kill["node"]
    healed = json_of(local, "chaos", "heal")
    assert healed["left"] == [f"{killed}: not running (`quorapay chaos restart {killed}` or "
                              "`quorapay up`)"]
    check("chaos kill", restart := json_of(local, "chaos", "restart", "leader"))
    assert restart["node"] == killed  # the node `kill leader` chose
    assert "no node 'n9'" in json_of(local, "chaos", "resume", "n9", code=1)


def test_bench_and_bench_failover_smoke(local: ClusterConfig, tmp_path: Path) -> None:
    """A few seconds of each benchmark on a real cluster: correctness and shapes, no timing."""
    json_of(local, "up")
    plot = tmp_path / "bench.png"
    check("bench", load := json_of(local, "bench", "--points", "2,2x10", "--seconds", "1",
                                   "--warm-up", "0.2", "--plot", str(plot)))
    assert load["valid"] and load["check"]["found"] == load["check"]["acknowledged"] > 0
    assert [(p["clients"], p["batch"]) for p in load["points"]] == [(2, 1), (2, 10)]
    assert all(p["acknowledged"] > 0 and set(p["cpu_seconds"]) == {"n1", "n2", "n3", "proxy"}
               for p in load["points"])
    assert plot.read_bytes().startswith(b"\x89PNG")
    check("bench failover", killed := json_of(local, "bench", "failover", "--kills", "1",
                                              "--clients", "2"))
    [takeover] = killed["takeovers"]
    assert killed["valid"] and takeover["fenced"] is None
    assert takeover["new_leader"] != takeover["old_leader"]
    assert takeover["new_epoch"] > takeover["old_epoch"]
    paused = json_of(local, "bench", "failover", "--kills", "1", "--pause", "--clients", "2")
    assert paused["valid"] and paused["takeovers"][0]["fenced"] is True
    assert json_of(local, "bench", "--points", "0", code=1).strip().endswith(
        "1-256 clients, 1-1000 transfers per request")
    scale_plot = tmp_path / "scale.png"
    check("bench scale", scaled := json_of(local, "bench", "scale", "--levels", "400,900",
                                           "--seconds", "0.5", "--plot", str(scale_plot)))
    assert scaled["valid"] and all(level["transfers"] >= wanted for level, wanted
                                   in zip(scaled["levels"], (400, 900), strict=True))
    assert all(level["restart_seconds"] and level["rebuild_seconds"] and not level["problems"]
               and set(level["rss_mb"]) == {"n1", "n2", "n3", "proxy"}
               for level in scaled["levels"])
    assert scale_plot.read_bytes().startswith(b"\x89PNG")
    assert "ascending" in json_of(local, "bench", "scale", "--levels", "9,3", code=2)


def test_the_benchmarks_json_has_its_documented_shape(tmp_path: Path) -> None:
    """`bench tls` runs its own two clusters (TLS and insecure), briefly here."""
    done = subprocess.run([*QUORAPAY, "bench", "tls", "--rounds", "1", "--seconds", "1",
                           "--json"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)
    check("bench tls", rows)
    for row in rows:
        assert set(row["tls"]) == set(row["insecure"]) == {
            "transfers_per_s", "p50_ms", "p99_ms", "failed"}
