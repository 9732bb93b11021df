"""The local ZooKeeper server that `quorapay up` runs when the cluster file says mode = "local".

It is found through $ZOOKEEPER_HOME (a release: lib/*.jar) or Debian's
/usr/share/java/zookeeper.jar, runs standalone with its own data directory under the run
directory, and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from pathlib import Path

from quorapay.cluster.processes import Tracked
from quorapay.config import ClusterConfig
from quorapay.core.errors import QuorapayError

DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"


class ZooKeeperError(QuorapayError):
    """ZooKeeper cannot be found, started or reached."""


def tracked(cluster: ClusterConfig) -> Tracked:
    home = cluster.run_dir / "zookeeper"
    return Tracked(name="zookeeper", pid_file=home / "zookeeper.pid",
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


def start(cluster: ClusterConfig, *, timeout: float = 30.0) -> int | None:
    """Start the local server unless it is running; wait until it serves. Returns a new pid."""
    process = tracked(cluster)
    if process.pid() is not None:
        wait_serving(cluster, timeout=timeout)
        return None
    port = cluster.zookeeper.port
    if answers_ruok(port):
        return None  # a server of someone else's is there: use it
    problem = port_problem(port)
    if problem:
        raise ZooKeeperError(f"ZooKeeper port {port} on 127.0.0.1 {problem}")
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperError("java not found: install a Java runtime (apt-get install zookeeper "
                             "brings one)")
    home = cluster.run_dir / "zookeeper"
    config = home / "zoo.cfg"
    (home / "data").mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"tickTime=500\ndataDir={home / 'data'}\nclientPort={port}\n"
        "clientPortAddress=127.0.0.1\nmaxClientCnxns=200\nadmin.enableServer=false\n"
        "minSessionTimeout=1000\nmaxSessionTimeout=60000\n"
        "4lw.commands.whitelist=ruok,srvr,stat\n")
    pid = process.start([java, "-Xmx256m", "-cp", classpath(), MAIN_CLASS, str(config)])
    try:
        wait_serving(cluster, timeout=timeout)
    except ZooKeeperError:
        process.stop(grace=2)
        raise
    return pid


def wait_serving(cluster: ClusterConfig, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers_ruok(cluster.zookeeper.port):
        if time.monotonic() > deadline:
            raise ZooKeeperError(f"ZooKeeper did not start serving on 127.0.0.1:"
                                 f"{cluster.zookeeper.port} within {timeout:g}s (see "
                                 f"{tracked(cluster).log_file})")
        time.sleep(0.1)


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


def stop(cluster: ClusterConfig) -> bool:
    return tracked(cluster).stop(grace=10)
