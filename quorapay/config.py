"""cluster.toml -> a frozen, typed ClusterConfig. Validation reports every problem at once.

Relative paths in the file are relative to the file's own directory, so a cluster file works
from wherever a command is run.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from quorapay.clock.skew import ClockFaultError, ClockSkew, parse_drift, parse_offset
from quorapay.core.compaction import CompactionPolicy
from quorapay.core.errors import QuorapayError
from quorapay.core.timing import Timing
from quorapay.core.types import NodeId
from quorapay.logs.lines import FORMATS as LOG_FORMATS
from quorapay.transport.address import Address, parse_address, websocket_url

DEFAULT_PATH = Path("cluster.toml")
CLOCK_PROBE_SECONDS = 0.25  # every node measures every peer's clock this often
WRITE_STALL_SECONDS = 10.0  # a leader whose oldest write is in flight this long steps down
RECOVERY_STALL_SECONDS = 20.0  # a recovering leader that receives nothing this long gives up
DEFAULT_COMPACT_EVERY = 100_000  # entries applied above the retained tail before compacting
DEFAULT_COMPACT_RETAIN = 10_000  # applied entries kept for followers that lag a little
DEFAULT_MAX_LOG_COMMANDS = 1_000_000  # compact once the applied log holds more (its memory)
DEFAULT_CACHE_MB = 64  # the page cache a node reads its stored transfers through
DEFAULT_SNAPSHOT_PART_ROWS = 2000  # rows per part of a streamed snapshot (~0.5 MB at most)
MAX_SNAPSHOT_PART_ROWS = 100_000  # (a part must stay well inside one 64 MiB peer frame)
# a leader's snapshot to a follower (the cluster serving meanwhile) sends at most this, so that
# it leaves the leader's latency alone (docs/04-evaluation: p99 1.4 times, not 2.9, on 2 cores)
DEFAULT_SNAPSHOT_MB_PER_S = 4.0
MAX_CACHE_MB = 65_536
DEFAULT_LEADER_SILENCE = 0.5  # seconds: see TimingConfig.leader_silence
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # no leading dot: names are dirs
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_KEYS = {
    "": {"cluster", "zookeeper", "timing", "storage", "nodes", "chaos", "security", "logging"},
    "cluster": {"name", "run_dir"},
    "zookeeper": {"mode", "port", "hosts", "servers", "session_timeout"},
    "timing": {"tick", "heartbeat_interval", "election_timeout", "request_timeout",
               "max_clock_offset", "leader_silence"},
    "chaos": {"proxies"},
    "storage": {"compact_every", "compact_retain", "max_log_commands", "cache_mb",
                "snapshot_part_rows", "snapshot_mb_per_s"},
    "security": {"secrets_dir", "insecure_benchmark_only"},
    "logging": {"format", "level"},
    "node": {"id", "host", "peer_port", "client_port", "data_dir", "listen_client_port",
             "routes", "clock_offset", "clock_drift"},
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list",
               bool: "true or false", dict: "a table"}


class ConfigError(QuorapayError):
    """The cluster file is missing, unreadable or invalid. The message lists every problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """A node: where it listens, and how it reaches the others.

    `client_port` is the address clients are given (in NOT_LEADER hints); the node listens on
    `listen_client_port` when it is set (behind a proxy, say), else on `client_port`. `routes`
    maps a peer id to the "host:port" to dial it at, and "zookeeper" to a connect string; by
    default a peer is dialed at its own `peer_address` and ZooKeeper at the cluster's servers.
    """

    id: NodeId
    host: str
    peer_port: int
    client_port: int
    data_dir: Path
    listen_client_port: int | None = None
    routes: dict[str, str] = field(default_factory=dict)
    clock: ClockSkew = ClockSkew()  # the node's wall clock against the machine's

    @property
    def peer_address(self) -> Address:
        return Address(self.host, self.peer_port)

    @property
    def client_address(self) -> Address:
        return Address(self.host, self.client_port)

    @property
    def bind_client_port(self) -> int:
        return self.listen_client_port or self.client_port

    def route_to(self, peer: NodeConfig) -> Address:
        route = self.routes.get(peer.id)
        return parse_address(route) if route is not None else peer.peer_address


@dataclass(frozen=True, slots=True, kw_only=True)
class ZooKeeperConfig:
    """Either a local server that `quorapay up` starts on `port`, or external `hosts`."""

    mode: str  # "local" | "external"
    port: int  # local mode: the first server's client port; server i listens on port + i - 1
    hosts: tuple[str, ...]
    session_timeout: float
    servers: int = 1  # local mode: 1 (standalone) or 3 (an ensemble)

    @property
    def ports(self) -> tuple[int, ...]:
        """Local mode: every server's client port."""
        return tuple(self.port + i for i in range(self.servers))

    @property
    def connect_string(self) -> str:
        if self.mode == "external":
            return ",".join(self.hosts)
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingConfig:
    tick: float  # seconds per core tick
    heartbeat_interval: float
    election_timeout: float  # a leader without a majority this long gives up leadership
    request_timeout: float  # a client request without an outcome this long gets TIMEOUT
    max_clock_offset: float = 0.5  # the bound on clock offsets between nodes
    # followers that heard nothing from the leader this long, a majority agreeing, depose it
    # in ZooKeeper (0: wait for its session to expire)
    leader_silence: float = DEFAULT_LEADER_SILENCE

    def core(self) -> Timing:
        heartbeat = max(1, round(self.heartbeat_interval / self.tick))
        election = max(2 * heartbeat + 1, round(self.election_timeout / self.tick))
        return Timing(heartbeat_ticks=heartbeat, retransmit_ticks=2 * heartbeat,
                      election_timeout_ticks=election, snapshot_retry_ticks=election,
                      clock_probe_ticks=max(1, round(CLOCK_PROBE_SECONDS / self.tick)),
                      max_clock_offset_ms=round(self.max_clock_offset * 1000),
                      handover_ticks=max(1, round(self.request_timeout / 2 / self.tick)),
                      write_stall_ticks=max(election + 1, round(WRITE_STALL_SECONDS / self.tick)),
                      recovery_stall_ticks=max(4 * election + 1,
                                               round(RECOVERY_STALL_SECONDS / self.tick)),
                      silence_ticks=max(2 * heartbeat + 1, round(self.leader_silence / self.tick))
                      if self.leader_silence else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """Log compaction: see `CompactionPolicy`. compact_every = 0 keeps the whole log;
    max_log_commands = 0 lets it hold any number of commands. cache_mb bounds the page cache
    through which a node reads its stored transfers; snapshot_part_rows, the accounts or
    transfers in each part of a streamed snapshot; snapshot_mb_per_s, the most a leader's
    snapshot to a follower sends a second (0: as fast as it goes; a recovering leader's is
    never limited)."""

    compact_every: int = DEFAULT_COMPACT_EVERY
    compact_retain: int = DEFAULT_COMPACT_RETAIN
    max_log_commands: int = DEFAULT_MAX_LOG_COMMANDS
    cache_mb: int = DEFAULT_CACHE_MB
    snapshot_part_rows: int = DEFAULT_SNAPSHOT_PART_ROWS
    snapshot_mb_per_s: float = DEFAULT_SNAPSHOT_MB_PER_S

    def compaction(self) -> CompactionPolicy | None:
        if self.compact_every == 0:
            return None
        return CompactionPolicy(every=self.compact_every, retain=self.compact_retain,
                                max_commands=self.max_log_commands or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    """Where the cluster's secrets are (see `quorapay.security.secrets`). `insecure` turns off
    TLS, credentials and ZooKeeper ACLs: for measuring their cost in benchmarks, never else."""

    secrets_dir: Path
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return not self.insecure


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    """How node and proxy processes write their logs: "text" lines or "json" lines."""

    format: str = "text"
    level: str = "INFO"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    path: Path
    name: str
    run_dir: Path
    nodes: tuple[NodeConfig, ...]
    zookeeper: ZooKeeperConfig
    timing: TimingConfig
    security: SecurityConfig
    proxies: bool = True  # local mode: every link goes through the chaos proxy
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        known = ", ".join(n.id for n in self.nodes)
        raise ConfigError(f"no node {node_id!r} in {self.path} (nodes: {known})")

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return tuple(n.id for n in self.nodes)

    def client_url(self, node: NodeConfig) -> str:
        """Where clients reach `node` (wss://, or ws:// in an insecure benchmark)."""
        return websocket_url(node.client_address, tls=self.security.tls)

    @property
    def client_urls(self) -> list[str]:
        return [self.client_url(node) for node in self.nodes]


def load_config(path: Path = DEFAULT_PATH) -> ClusterConfig:
    """Read and validate a cluster file. Raises ConfigError naming every problem found."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"cluster file {path} not found (create one with `quorapay init`)")\
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return _Parser(path, raw).parse()


def parse_config(path: Path, text: str) -> ClusterConfig:
    """Validate cluster-file text as if it were at `path` (for `init`, before writing)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return _Parser(path, raw).parse()


class _Parser:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.raw = raw
        self.problems: list[str] = []
        self.home = cluster_home("quorapay")

    def parse(self) -> ClusterConfig:
        self._known(self.raw, "", "")
        cluster = self._table(self.raw, "cluster")
        name = self._get(cluster, "cluster.name", str, "quorapay")
        if not _NAME.fullmatch(name):
            self.problems.append("cluster.name must be 1-64 characters of A-Z a-z 0-9 _ . -, "
                                 "not starting with a dot")
        self.home = cluster_home(name if _NAME.fullmatch(name) else "quorapay")
        run_dir = self._path(self._get(cluster, "cluster.run_dir", str, f"{self.home}/run"))
        zookeeper = self._zookeeper(self._table(self.raw, "zookeeper"))
        timing = self._timing(self._table(self.raw, "timing"))
        chaos = self._table(self.raw, "chaos")
        proxies = self._get(chaos, "chaos.proxies", bool, True)
        storage = self._storage(self._table(self.raw, "storage"))
        security = self._security(self._table(self.raw, "security"))
        logs = self._logging(self._table(self.raw, "logging"))
        nodes = self._nodes()
        if zookeeper.mode == "local":
            for node in nodes:
                clash = set(zookeeper.ports) & {node.peer_port, node.client_port}
                if node.host in ("127.0.0.1", "localhost") and clash:
                    self.problems.append(f"zookeeper port {min(clash)} is also a port of "
                                         f"node {node.id}")
        if self.problems:
            raise ConfigError(f"{self.path}: {'; '.join(self.problems)}")
        return ClusterConfig(path=self.path, name=name, run_dir=run_dir, nodes=nodes,
                             zookeeper=zookeeper, timing=timing, security=security,
                             proxies=proxies, storage=storage, logging=logs)

    def _zookeeper(self, table: dict[str, Any]) -> ZooKeeperConfig:
        self._known(table, "zookeeper", "zookeeper")
        mode = self._get(table, "zookeeper.mode", str, "local")
        hosts = self._get(table, "zookeeper.hosts", list, [])
        if mode not in ("local", "external"):
            self.problems.append('zookeeper.mode must be "local" or "external"')
        if mode == "external" and not hosts:
            self.problems.append('zookeeper.hosts must list "host:port" servers in external mode')
        for host in hosts:
            name, _, number = str(host).rpartition(":")
            if not isinstance(host, str) or not _HOST.fullmatch(name) or not number.isdigit() \
                    or not 1 <= int(number) <= 65535:
                self.problems.append(f"zookeeper.hosts entry {host!r} is not \"host:port\"")
        session = self._get(table, "zookeeper.session_timeout", float, 4.0)
        if not 2.0 <= session <= 60.0:
            self.problems.append("zookeeper.session_timeout must be between 2 and 60 seconds")
        servers = self._get(table, "zookeeper.servers", int, 1)
        if servers not in (1, 3):
            self.problems.append("zookeeper.servers must be 1 (standalone) or 3 (an ensemble)")
        port = self._port(table, "zookeeper.port", 21810)
        if port + servers - 1 > 65535:
            self.problems.append("zookeeper.port leaves no room for every server's port")
        return ZooKeeperConfig(mode=mode, port=port, hosts=tuple(str(h) for h in hosts),
                               session_timeout=session, servers=servers)

    def _timing(self, table: dict[str, Any]) -> TimingConfig:
        self._known(table, "timing", "timing")
        tick = self._get(table, "timing.tick", float, 0.05)
        heartbeat = self._get(table, "timing.heartbeat_interval", float, 0.1)
        election = self._get(table, "timing.election_timeout", float, 2.0)
        request = self._get(table, "timing.request_timeout", float, 5.0)
        max_offset = self._get(table, "timing.max_clock_offset", float, 0.5)
        if not 0.001 <= max_offset <= 3600:
            self.problems.append("timing.max_clock_offset must be between 0.001 and 3600 seconds")
        if not 0.005 <= tick <= 1.0:
            self.problems.append("timing.tick must be between 0.005 and 1 second")
        if not tick <= heartbeat < election / 2:
            self.problems.append(
                "timing must satisfy tick <= heartbeat_interval < election_timeout / 2")
        if request <= 0:
            self.problems.append("timing.request_timeout must be positive")
        silence = self._get(table, "timing.leader_silence", float, DEFAULT_LEADER_SILENCE)
        if silence != 0 and not 2 * heartbeat < silence <= 60:
            self.problems.append("timing.leader_silence must be 0 (off) or more than twice "
                                 "timing.heartbeat_interval, and at most 60 seconds")
        return TimingConfig(tick=tick, heartbeat_interval=heartbeat, election_timeout=election,
                            request_timeout=request, max_clock_offset=max_offset,
                            leader_silence=silence)

    def _storage(self, table: dict[str, Any]) -> StorageConfig:
        self._known(table, "storage", "storage")
        every = self._get(table, "storage.compact_every", int, DEFAULT_COMPACT_EVERY)
        retain = self._get(table, "storage.compact_retain", int, DEFAULT_COMPACT_RETAIN)
        if every < 0:
            self.problems.append("storage.compact_every must be 0 (never compact) or positive")
        if retain < 0:
            self.problems.append("storage.compact_retain must not be negative")
        max_commands = self._get(table, "storage.max_log_commands", int,
                                 DEFAULT_MAX_LOG_COMMANDS)
        if max_commands < 0:
            self.problems.append("storage.max_log_commands must be 0 (no bound) or positive")
        cache_mb = self._get(table, "storage.cache_mb", int, DEFAULT_CACHE_MB)
        if not 1 <= cache_mb <= MAX_CACHE_MB:
            self.problems.append(f"storage.cache_mb must be from 1 to {MAX_CACHE_MB}")
        part_rows = self._get(table, "storage.snapshot_part_rows", int,
                              DEFAULT_SNAPSHOT_PART_ROWS)
        if not 1 <= part_rows <= MAX_SNAPSHOT_PART_ROWS:
            self.problems.append("storage.snapshot_part_rows must be from 1 to "
                                 f"{MAX_SNAPSHOT_PART_ROWS}")
        rate = self._get(table, "storage.snapshot_mb_per_s", float, DEFAULT_SNAPSHOT_MB_PER_S)
        if not (math.isfinite(rate) and rate >= 0):
            self.problems.append("storage.snapshot_mb_per_s must be 0 (no limit) or positive")
            rate = 0.0
        return StorageConfig(compact_every=max(every, 0), compact_retain=max(retain, 0),
                             max_log_commands=max(max_commands, 0),
                             cache_mb=min(max(cache_mb, 1), MAX_CACHE_MB),
                             snapshot_part_rows=min(max(part_rows, 1), MAX_SNAPSHOT_PART_ROWS),
                             snapshot_mb_per_s=rate)

    def _security(self, table: dict[str, Any]) -> SecurityConfig:
        self._known(table, "security", "security")
        folder = self._get(table, "security.secrets_dir", str, f"{self.home}/secrets")
        insecure = self._get(table, "security.insecure_benchmark_only", bool, False)
        return SecurityConfig(secrets_dir=self._path(folder), insecure=insecure)

    def _logging(self, table: dict[str, Any]) -> LoggingConfig:
        self._known(table, "logging", "logging")
        fmt = self._get(table, "logging.format", str, "text")
        level = self._get(table, "logging.level", str, "INFO")
        if fmt not in LOG_FORMATS:
            self.problems.append('logging.format must be "text" or "json"')
        if level not in LOG_LEVELS:
            self.problems.append(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
        return LoggingConfig(format=fmt, level=level)

    def _nodes(self) -> tuple[NodeConfig, ...]:
        raw_nodes = self.raw.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            self.problems.append("at least one [[nodes]] entry is required")
            return ()
        nodes = [self._node(i, t) for i, t in enumerate(raw_nodes) if isinstance(t, dict)]
        if len(nodes) != len(raw_nodes):
            self.problems.append("every [[nodes]] entry must be a table")
        self._unique([(n.id, n.id) for n in nodes], "node id")
        self._unique([(f"port {p} on {n.host}", f"{n.id} {what}_port") for n in nodes
                      for p, what in ((n.peer_port, "peer"), (n.client_port, "client"))], "")
        self._unique([(str(n.data_dir), n.id) for n in nodes], "data_dir")
        return tuple(nodes)

    def _node(self, position: int, table: dict[str, Any]) -> NodeConfig:
        where = f"nodes[{position}]"
        self._known(table, "node", where)
        node_id = self._get(table, f"{where}.id", str, f"n{position + 1}")
        if not _NAME.fullmatch(node_id):
            self.problems.append(f"{where}.id must be 1-64 characters of A-Z a-z 0-9 _ . -, "
                                 "not starting with a dot")
        elif "__" in node_id:
            self.problems.append(f"{where}.id must not contain \"__\" (it separates the parts "
                                 "of ZooKeeper election znodes)")
        host = self._get(table, f"{where}.host", str, "127.0.0.1")
        if not _HOST.fullmatch(host):
            self.problems.append(f"{where}.host {host!r} is not a host name or IPv4 address")
        routes = self._get(table, f"{where}.routes", dict, {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in routes.items()):
            self.problems.append(f"{where}.routes must map names to address strings")
        for peer, route in routes.items():
            if peer != "zookeeper" and isinstance(route, str):
                try:
                    parse_address(route)
                except ValueError as exc:
                    self.problems.append(f"{where}.routes.{peer}: {exc}")
        listen = table.get("listen_client_port")
        return NodeConfig(
            id=NodeId(node_id),
            host=host,
            peer_port=self._port(table, f"{where}.peer_port", 7101 + position),
            client_port=self._port(table, f"{where}.client_port", 7201 + position),
            data_dir=self._path(self._get(table, f"{where}.data_dir", str,
                                          f"{self.home}/data/{node_id}")),
            listen_client_port=None if listen is None else self._port(
                table, f"{where}.listen_client_port", 0),
            routes={str(k): str(v) for k, v in routes.items()},
            clock=self._clock(table, where))

    def _clock(self, table: dict[str, Any], where: str) -> ClockSkew:
        """clock_offset ("+2s", "-500ms" or seconds) and clock_drift ("100ppm" or a number)."""
        try:
            offset = parse_offset(str(table.get("clock_offset", 0)))
            drift = parse_drift(str(table.get("clock_drift", 0)))
        except ClockFaultError as exc:
            self.problems.append(f"{where}: {exc}")
            return ClockSkew()
        return ClockSkew(offset_ms=offset, drift_ppm=drift)

    # ---------------------------------------------------------------- typed access

    def _table(self, raw: dict[str, Any], key: str) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            self.problems.append(f"[{key}] must be a table")
            return {}
        if key == "cluster":
            self._known(value, "cluster", "cluster")
        return value

    def _known(self, table: dict[str, Any], kind: str, where: str) -> None:
        for key in sorted(set(table) - _KEYS[kind]):
            self.problems.append(f"unknown key {where + '.' if where else ''}{key}")

    def _get(self, table: dict[str, Any], dotted: str, kind: type, default: Any) -> Any:
        value = table.get(dotted.rsplit(".", 1)[-1], default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.problems.append(f"{dotted} must be {_TYPE_NAMES[kind]}, not {value!r}")
            return default
        return value

    def _port(self, table: dict[str, Any], dotted: str, default: int) -> int:
        port: int = self._get(table, dotted, int, default)
        if not 1 <= port <= 65535:
            self.problems.append(f"{dotted} must be a TCP port (1-65535), got {port}")
        return port

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def _unique(self, values: list[tuple[str, str]], what: str) -> None:
        """values: (the value that must be unique, who uses it)."""
        users: dict[str, list[str]] = {}
        for value, user in values:
            users.setdefault(value, []).append(user)
        for value, who in users.items():
            if len(who) > 1:
                named = f"{what} {value}" if what else value
                self.problems.append(f"{named} is used more than once"
                                     + ("" if what == "node id" else f" ({', '.join(who)})"))


def default_cluster(*, nodes: int = 3, name: str = "quorapay-local", base_port: int = 7100,
                    zookeeper_port: int = 21810, zookeeper_servers: int = 1,
                    zookeeper_hosts: tuple[str, ...] = (), proxies: bool = True,
                    log_format: str = "text") -> dict[str, Any]:
    """The document `quorapay init` writes, every key in it: a cluster on 127.0.0.1, with a
    local ZooKeeper (`zookeeper_servers` of them) unless `zookeeper_hosts` names external ones."""
    home = cluster_home(name)
    return {
        "cluster": {"name": name, "run_dir": f"{home}/run"},
        "zookeeper": {"mode": "external" if zookeeper_hosts else "local",
                      "port": zookeeper_port, "servers": zookeeper_servers,
                      "hosts": list(zookeeper_hosts), "session_timeout": 4.0},
        "timing": {"tick": 0.05, "heartbeat_interval": 0.1, "election_timeout": 2.0,
                   "request_timeout": 5.0, "max_clock_offset": 0.5,
                   "leader_silence": DEFAULT_LEADER_SILENCE},
        "storage": {"compact_every": DEFAULT_COMPACT_EVERY,
                    "compact_retain": DEFAULT_COMPACT_RETAIN,
                    "max_log_commands": DEFAULT_MAX_LOG_COMMANDS, "cache_mb": DEFAULT_CACHE_MB,
                    "snapshot_part_rows": DEFAULT_SNAPSHOT_PART_ROWS,
                    "snapshot_mb_per_s": DEFAULT_SNAPSHOT_MB_PER_S},
        "chaos": {"proxies": proxies},
        "security": {"secrets_dir": f"{home}/secrets", "insecure_benchmark_only": False},
        "logging": {"format": log_format, "level": "INFO"},
        "nodes": [{"id": f"n{i}", "host": "127.0.0.1", "peer_port": base_port + i,
                   "client_port": base_port + 100 + i, "data_dir": f"{home}/data/n{i}"}
                  for i in range(1, nodes + 1)],
    }


def cluster_home(name: str) -> str:
    """Where a cluster's run, data and secrets dirs are by default, next to its file: one
    folder per cluster name, so that two cluster files in one folder share nothing."""
    return f".quorapay/{name}"


def render(document: dict[str, Any]) -> str:
    header = ("# Quorapay cluster file: one [[nodes]] entry per node process.\n"
              "# zookeeper.mode = \"local\": `quorapay up` runs zookeeper.servers (1 or 3)\n"
              "# ZooKeeper servers from port on; \"external\": nodes use zookeeper.hosts.\n"
              "# Times are in seconds; relative paths are relative to this file.\n"
              "# storage.compact_every = 0 keeps the whole log. timing.max_clock_offset\n"
              "# bounds how far node clocks may be apart; a node entry may skew its clock:\n"
              "# clock_offset = \"-1.5s\", clock_drift = \"100ppm\". Followers that hear\n"
              "# nothing from the leader for timing.leader_silence (a majority agreeing)\n"
              "# depose it; 0 waits for its ZooKeeper session to expire. chaos.proxies puts\n"
              "# the chaos proxy on every link of a local cluster (network faults need it).\n"
              "# security.secrets_dir holds the cluster's CA, node and client certificates\n"
              "# and ZooKeeper password (`quorapay init --secrets-only`); never commit it.\n"
              "# logging.format: \"text\" or \"json\" lines in run_dir/logs (`quorapay logs`).\n\n")
    return header + tomli_w.dumps(document)
