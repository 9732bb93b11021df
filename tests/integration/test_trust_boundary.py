"""The attacks of issue 11 against a real cluster, each as an outsider would make it: no
certificate, a certificate of another cluster, a valid node certificate claiming another node,
a payer calling operator operations. Each is refused, the ledgers do not change, the leader keeps
leading, and verify passes."""

from __future__ import annotations

import shutil
import ssl
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
import trio
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from quorapay.api import schema as api
from quorapay.client import Client, ClientError
from quorapay.cluster import supervisor, zookeeper
from quorapay.config import ClusterConfig
from quorapay.core.hlc import Timestamp
from quorapay.core.messages import (
    PROTOCOL_VERSION,
    Append,
    Frame,
    Hello,
    RefusalReason,
    Refused,
    SnapshotChunk,
    encode,
)
from quorapay.core.types import (
    AccountId,
    Cents,
    Commands,
    Epoch,
    LogEntry,
    LogIndex,
    NodeId,
    Transfer,
    TransferId,
)
from quorapay.core.znodes import Layout
from quorapay.security.access import ask_node, cluster_client
from quorapay.security.tls import credential_context, node_client_context
from quorapay.transport.dial import TlsRefused, dial
from quorapay.verify.checks import Verdict
from quorapay.workload.transfers import setup_accounts
from tests.integration.conftest import write_cluster
from tests.integration.helpers import leader, local_cluster_file, verified

pytestmark = pytest.mark.integration


@pytest.fixture
async def running(cluster: ClusterConfig) -> ClusterConfig:
    await supervisor.up(cluster)
    async with cluster_client(cluster) as client:
        await setup_accounts(client, 4)
    return cluster


async def snapshot(cluster: ClusterConfig) -> tuple[str, int, dict[str, str]]:
    """(leader, epoch, each node's ledger digest) once every node applied the same index."""
    with trio.fail_after(30):
        while True:
            current = await leader(cluster)
            digests = {}
            for node in cluster.nodes:
                response = await ask_node(cluster, node, api.Digest(), timeout=10)
                assert response.digest is not None
                digests[node.id] = (response.digest.index, response.digest.stored_state_digest)
            if len(set(digests.values())) == 1:
                return current.node, current.epoch, {n: str(d) for n, d in digests.items()}
            await trio.sleep(0.2)


async def unchanged(cluster: ClusterConfig, before: tuple[str, int, dict[str, str]]) -> None:
    """The ledgers as they were, the same leader in the same epoch, and verify passes."""
    assert await snapshot(cluster) == before
    result = await verified(cluster)
    assert result.verdict is Verdict.VALID, result.findings


def forged_frames() -> list[bytes]:
    """What an attacker would send once past the Hello: a transfer from nowhere in an epoch
    above any, a snapshot creating money, a refusal deposing the leader, an epoch of 2^63."""
    theft = Transfer(id=TransferId("forged"), debit=AccountId("acct-1"),
                     credit=AccountId("acct-2"), amount=Cents(999), currency="USD")
    entry = LogEntry(index=LogIndex(1), epoch=Epoch(1000), ts=Timestamp(1, 0),
                     payload=Commands(commands=(theft,)))
    messages = [
        Append(epoch=Epoch(1000), prev_index=LogIndex(0), prev_epoch=Epoch(0), entries=(entry,),
               commit=LogIndex(1), seq=1),
        SnapshotChunk(epoch=Epoch(1000), index=LogIndex(1), last_epoch=Epoch(1000), stream=1, seq=0,
                      last=True),
        Refused(epoch=Epoch(1), promised_epoch=Epoch(1000), reason=RefusalReason.STALE_EPOCH),
    ]
    frames = [encode(Frame(version=PROTOCOL_VERSION, messages=(m,))) for m in messages]
    frames.append(msgspec.msgpack.encode({"version": PROTOCOL_VERSION, "messages": [
        {"type": "append", "epoch": 2**63, "prev_index": 0, "prev_epoch": 0, "entries": [],
         "commit": 0, "seq": 0}]}))
    return frames


async def closed_by_the_node(ws: WebSocketConnection) -> None:
    """Read until the node closes the link (it must, within 10 s); nothing it sends matters."""
    with trio.fail_after(10):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed:
                return


def hello(cluster: ClusterConfig, node: str) -> bytes:
    return encode(Hello(version=PROTOCOL_VERSION, cluster=cluster.name, node=NodeId(node)))


async def test_no_certificate_gets_no_further_than_tls(running: ClusterConfig) -> None:
    cluster = running
    before = await snapshot(cluster)
    target = cluster.node(before[0])
    anonymous = ssl.create_default_context(cafile=str(cluster.security.secrets_dir / "ca.pem"))
    anonymous.check_hostname = False
    async with trio.open_nursery() as nursery:
        with pytest.raises(HandshakeError):  # the peer port requires a node certificate
            await dial(nursery, target.peer_address, tls=anonymous, timeout=5,
                       max_message_size=2**20)
        with pytest.raises(ConnectionRejected) as rejected:  # the client port: 401, and why
            await dial(nursery, target.client_address, tls=anonymous, timeout=5,
                       max_message_size=2**20)
        assert rejected.value.status_code == 401
        for port in (target.peer_port, target.client_port):  # no TLS at all: the raw attack
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            try:
                await stream.send_all(hello(cluster, "n1") + b"".join(forged_frames()))
                with trio.fail_after(10):
                    while await stream.receive_some(4096):
                        pass  # the node answers with a TLS alert at most, then closes
            except trio.BrokenResourceError:
                pass
            await stream.aclose()
    await unchanged(cluster, before)


async def test_a_certificate_of_another_cluster_is_refused(running: ClusterConfig,
                                                            tmp_path: Path, zk_port: int) -> None:
    cluster = running
    (tmp_path / "theirs").mkdir()
    theirs = write_cluster(tmp_path / "theirs" / "cluster.toml", zk_port=zk_port,
                           name=cluster.name)  # same name and node ids, another CA
    before = await snapshot(cluster)
    target = cluster.node(before[0])
    async with trio.open_nursery() as nursery:
        for address, tls in ((target.peer_address, node_client_context(theirs, "n1")),
                             (target.client_address, credential_context(theirs, "operator"))):
            with pytest.raises(TlsRefused):  # theirs does not trust our nodes' certificates
                await dial(nursery, address, tls=tls, timeout=5, max_message_size=2**20)
    async with Client(cluster.client_urls, tls=credential_context(theirs, "operator"),
                      deadline=5) as client:
        with pytest.raises(ClientError) as refused:
            await client.submit_transfers([api.TransferSpec(
                id=f"x-{uuid.uuid4().hex}", debit="acct-1", credit="acct-2", amount=1)])
    assert refused.value.code is api.ErrorCode.UNAUTHENTICATED
    await unchanged(cluster, before)


async def test_a_node_certificate_cannot_speak_as_another_node(running: ClusterConfig) -> None:
    cluster = running
    before = await snapshot(cluster)
    leader_id = before[0]
    target = cluster.node(leader_id)
    others = sorted(n.id for n in cluster.nodes if n.id != leader_id)
    impostor, claimed = others[-1], others[0]  # a real node's certificate, another's name
    async with trio.open_nursery() as nursery:
        link = await dial(nursery, target.peer_address,
                          tls=node_client_context(cluster, impostor), timeout=5,
                          max_message_size=2**20)
        try:
            await link.ws.send_message(hello(cluster, claimed))
            for frame in forged_frames():
                await link.ws.send_message(frame)
            await closed_by_the_node(link.ws)
        except ConnectionClosed:
            pass  # closed before all was sent
        finally:
            await link.aclose()
        # as itself, at once: its live link is not taken over
        link = await dial(nursery, target.peer_address,
                          tls=node_client_context(cluster, impostor), timeout=5,
                          max_message_size=2**20)
        try:
            await link.ws.send_message(hello(cluster, impostor))
            await closed_by_the_node(link.ws)
        finally:
            await link.aclose()
    await unchanged(cluster, before)


async def test_a_payer_cannot_call_operator_operations(running: ClusterConfig) -> None:
    cluster = running
    before = await snapshot(cluster)
    async with cluster_client(cluster, credential="payer", deadline=10) as client:
        for request in (api.Digest(), api.Entries(first=1, last=5), api.Status(),
                        api.LocalTransfers(ids=["fund-acct-1"]), api.Barrier(),
                        api.CreateAccounts(accounts=[api.AccountSpec(id="mint",
                                                                     allow_negative=True)])):
            with pytest.raises(ClientError) as refused:
                await client.request(request)
            assert refused.value.code is api.ErrorCode.FORBIDDEN, request
        balances = await client.balances(["acct-1"])  # what a payer may do, it may
    assert balances[0].account == "acct-1"
    await unchanged(cluster, before)
    async with cluster_client(cluster, credential="payer") as client:  # and pay, but not mint
        minted, paid = await client.submit_transfers([
            api.TransferSpec(id="payer-mint", debit="bank", credit="acct-2", amount=10**9),
            api.TransferSpec(id="payer-ok", debit="acct-1", credit="acct-2", amount=1)])
        balance = (await client.balances(["acct-2"]))[0].balance
    assert (minted.status, paid.status) == ("forbidden", "ok")
    assert balance == 1_000_001  # funded with 1 000 000, then the payer's 1


async def test_znodes_left_open_are_closed_to_all_but_the_cluster(cluster: ClusterConfig) -> None:
    layout = Layout(cluster.name)
    open_acl = [make_acl("world", "anyone", all=True)]

    def pre_make() -> None:  # what an older version, or an early squatter, leaves behind
        zk = zookeeper.admin_client(cluster)
        zk.start(timeout=15)
        try:
            zk.ensure_path(layout.parent, acl=[make_acl("world", "anyone", read=True,
                                                        create=True)])
            zk.create(layout.root, acl=open_acl)
            zk.create(layout.epoch, b'{"epoch": 0}', acl=open_acl)
        finally:
            zk.stop()
            zk.close()

    def acls() -> list[list[str]]:
        zk = zookeeper.admin_client(cluster)
        zk.start(timeout=15)
        try:
            return [sorted(a.id.scheme for a in zk.get_acls(path)[0])
                    for path in (layout.root, layout.epoch)]
        finally:
            zk.stop()
            zk.close()

    def stranger_reads() -> bool:
        zk = KazooClient(hosts=cluster.zookeeper.connect_string,
                         auth_data=[("digest", "stranger:guess")])
        zk.start(timeout=15)
        try:
            zk.get(layout.epoch)
            return True
        except NoAuthError:
            return False
        finally:
            zk.stop()
            zk.close()

    await trio.to_thread.run_sync(pre_make)
    await supervisor.up(cluster)
    with trio.fail_after(20):
        while await trio.to_thread.run_sync(acls) != [["digest"], ["digest"]]:  # noqa: ASYNC110
            await trio.sleep(0.2)
    assert not await trio.to_thread.run_sync(stranger_reads)


async def test_new_secrets_for_a_local_cluster_reset_its_zookeeper_state(tmp_path: Path) -> None:
    """Revocation by a new CA (and a new ZooKeeper password): the local ZooKeeper's znodes, made
    with the old password's ACLs, are forgotten; the nodes rebuild them, ledgers intact."""
    cluster = local_cluster_file(tmp_path, name="renewed")
    try:
        await supervisor.up(cluster)
        async with cluster_client(cluster) as client:
            await setup_accounts(client, 2)
        supervisor.down(cluster)
        shutil.rmtree(cluster.security.secrets_dir)  # the old CA and password: revoked
        done = await trio.run_process(
            [sys.executable, "-m", "quorapay", "-c", str(cluster.path), "init", "--secrets-only"],
            capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr
        assert b"reset the local ZooKeeper's data" in done.stdout
        await supervisor.up(cluster, timeout=60)
        async with cluster_client(cluster) as client:  # the new credentials, the old ledger
            balances = await client.balances(["acct-1", "acct-2"])
        assert [b.balance for b in balances] == [1_000_000, 1_000_000]
    finally:
        supervisor.down(cluster)
