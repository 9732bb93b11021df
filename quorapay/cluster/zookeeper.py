"""The local ZooKeeper server that `quorapay up` runs when the cluster file says mode = "local".

It is found through $ZOOKEEPER_HOME (a release: lib/*.jar) or Debian's
/usr/share/java/zookeeper.jar, runs standalone with its own data directory under the run
directory (0700), listens on 127.0.0.1 only, and -- unless the cluster is an insecure
benchmark -- refuses every session that has not authenticated with the digest scheme
(`enforce.auth.enabled`, ZooKeeper 3.7 and later): the znodes' ACLs then admit only the cluster's
credential. The admin server is off; of the four-letter words only ruok, srvr and stat answer.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from quorapay.cluster.processes import Tracked
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError
from quorapay.files import private_dir, write_private
from quorapay.security.secrets import SecretsDir, read_zookeeper_credential

DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
STANDALONE_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
QUORUM_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 500


class ZooKeeperError(QuorapayError):
    """ZooKeeper cannot be found, started or reached."""


def tracked(cluster: ClusterConfig, server: int = 1) -> Tracked:
    home = cluster.run_dir / "zookeeper" / f"s{server}"
    return Tracked(name=f"zookeeper {server}", pid_file=home / "zookeeper.pid",
                   log_file=home / "zookeeper.log", marker=str(home / "zoo.cfg"))


def classpath() -> str:
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(Path(home, "lib").glob("*.jar")) + sorted(Path(home).glob("zookeeper*.jar"))
        if jars:
            return ":".join(str(j) for j in jars)
        raise ZooKeeperError(f"ZOOKEEPER_HOME={home} holds no ZooKeeper jars (lib/*.jar)")
    if DEBIAN_JAR.exists():
        return str(DEBIAN_JAR)  # its manifest names every dependency
    raise ZooKeeperError("ZooKeeper not found: install it (apt-get install zookeeper) or set "
                         "ZOOKEEPER_HOME to a ZooKeeper release")


def servers(cluster: ClusterConfig) -> range:
    return range(1, cluster.zookeeper.servers + 1)


def start(cluster: ClusterConfig, *, timeout: float = 30.0) -> list[int]:
    """Start every local server that is not running; wait until all serve. Returns those
    started."""
    started = [server for server in servers(cluster) if start_server(cluster, server)]
    wait_serving(cluster, timeout=timeout)
    return started


def start_server(cluster: ClusterConfig, server: int) -> bool:
    """Start one server unless it runs. False if it was running (or someone else's serves)."""
    process = tracked(cluster, server)
    port = cluster.zookeeper.ports[server - 1]
    if process.pid() is not None or answers_ruok(port):
        return False
    problem = port_problem(port)
    if problem:
        raise ZooKeeperError(f"ZooKeeper port {port} on 127.0.0.1 {problem}")
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperError("java not found: install a Java runtime (apt-get install zookeeper "
                             "brings one)")
    home = process.pid_file.parent
    private_dir(home / "data")
    config = home / "zoo.cfg"
    write_private(config, _server_config(cluster, server, home))
    main = STANDALONE_MAIN
    if cluster.zookeeper.servers > 1:
        write_private(home / "data" / "myid", f"{server}\n")
        main = QUORUM_MAIN
    process.start([java, "-Xmx256m", "-cp", classpath(), main, str(config)])
    return True


def _server_config(cluster: ClusterConfig, server: int, home: Path) -> str:
    zk = cluster.zookeeper
    lines = [f"tickTime={TICK_MS}", f"dataDir={home / 'data'}",
             f"clientPort={zk.ports[server - 1]}", "clientPortAddress=127.0.0.1",
             "maxClientCnxns=200", "admin.enableServer=false",
             f"minSessionTimeout={2 * TICK_MS}", "maxSessionTimeout=60000",
             "4lw.commands.whitelist=ruok,srvr,stat"]
    if not cluster.security.insecure:
        lines += ["enforce.auth.enabled=true", "enforce.auth.schemes=digest"]
    if zk.servers > 1:
        lines += ["initLimit=10", "syncLimit=5"]
        lines += [f"server.{i}=127.0.0.1:{quorum_port(cluster, i)}:{election_port(cluster, i)}"
                  for i in servers(cluster)]
    return "\n".join(lines) + "\n"


def quorum_port(cluster: ClusterConfig, server: int) -> int:
    return cluster.zookeeper.port + 1000 + server


def election_port(cluster: ClusterConfig, server: int) -> int:
    return cluster.zookeeper.port + 2000 + server


def wait_serving(cluster: ClusterConfig, *, timeout: float) -> None:
    """Until every running local server serves requests (an ensemble: has a quorum)."""
    deadline = time.monotonic() + timeout
    for server in servers(cluster):
        if tracked(cluster, server).pid() is None and not answers_ruok(
                cluster.zookeeper.ports[server - 1]):
            continue
        while not serving(cluster.zookeeper.ports[server - 1]):
            if time.monotonic() > deadline:
                raise ZooKeeperError(
                    f"ZooKeeper server {server} did not start serving on 127.0.0.1:"
                    f"{cluster.zookeeper.ports[server - 1]} within {timeout:g}s (see "
                    f"{tracked(cluster, server).log_file})")
            time.sleep(0.1)


def serving(port: int, host: str = "127.0.0.1") -> bool:
    """True if the server on `port` serves requests (standalone, leader or follower)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"srvr")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return b"Mode:" in reply


def answers_ruok(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


def reachable(hosts: tuple[str, ...]) -> bool:
    """True if any external ZooKeeper host accepts a TCP connection."""
    for host in hosts:
        name, _, port = host.rpartition(":")
        try:
            with socket.create_connection((name or host, int(port or 2181)), timeout=2.0):
                return True
        except (OSError, ValueError):
            continue
    return False


def port_problem(port: int, host: str = "127.0.0.1") -> str:
    """Why we could not listen on host:port ("" if we can)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is in use by another program"
            return f"cannot be bound: {exc.strerror}"
    return ""


def stop(cluster: ClusterConfig) -> list[int]:
    """Stop every local server; return those that were running."""
    return [server for server in servers(cluster) if stop_server(cluster, server)]


def stop_server(cluster: ClusterConfig, server: int, *, grace: float = 10.0) -> bool:
    return tracked(cluster, server).stop(grace=grace)


def local_data_exists(cluster: ClusterConfig) -> bool:
    """Whether a local ZooKeeper of this cluster has kept data (znodes, with their ACLs)."""
    return cluster.zookeeper.mode == "local" and any(
        (tracked(cluster, s).pid_file.parent / "data" / "version-2").exists()
        for s in servers(cluster))


def reset_local_data(cluster: ClusterConfig) -> None:
    """Forget the local ZooKeeper's data: the cluster's coordination state only (its epoch
    record, election and members), which the nodes rebuild -- epochs from what they promised.
    The servers must be stopped."""
    if any(tracked(cluster, s).pid() is not None for s in servers(cluster)):
        raise ZooKeeperError("the local ZooKeeper is running: `quorapay down` first")
    for server in servers(cluster):
        shutil.rmtree(tracked(cluster, server).pid_file.parent / "data", ignore_errors=True)


def admin_client(cluster: ClusterConfig) -> KazooClient:
    """A kazoo client holding the cluster's ZooKeeper credential, not started (for operators'
    tools and tests that look at or tamper with the cluster's znodes; blocking calls: run it in a
    thread)."""
    hosts = cluster.zookeeper.connect_string
    if cluster.security.insecure:
        return KazooClient(hosts=hosts)
    user, password = read_zookeeper_credential(SecretsDir(cluster.security.secrets_dir),
                                               cluster_file=cluster.path)
    return KazooClient(hosts=hosts, auth_data=[("digest", f"{user}:{password}")],
                       default_acl=[make_digest_acl(user, password, all=True)])
