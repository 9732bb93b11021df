"""The secrets dir of a cluster: where its CA, its credentials and its ZooKeeper password live.

    <secrets_dir>/ca.pem, ca.key                  the cluster's CA (the key signs credentials)
    <secrets_dir>/nodes/<node>.pem, <node>.key    each node's certificate and key
    <secrets_dir>/clients/<name>.pem, <name>.key  client credentials: `operator`, `payer`, ...
    <secrets_dir>/zookeeper.digest                the ZooKeeper digest credential, "user:password"

The dir is 0700 and every file 0600 (`quorapay init` makes them so); a key or password readable by
other users is refused, as ssh refuses such a key. Nothing here is ever committed: the default
dir, `.quorapay/<cluster name>/secrets` next to the cluster file, is ignored by git.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from quorapay.core.errors import QuorapayError

OPERATOR = "operator"  # the credential the CLI uses unless told otherwise
PAYER = "payer"


class SecretsError(QuorapayError):
    """A secret is missing, unreadable, or readable by other users. Says how to fix it."""


@dataclass(frozen=True, slots=True)
class SecretsDir:
    path: Path

    @property
    def ca_cert(self) -> Path:
        return self.path / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.path / "ca.key"

    @property
    def zookeeper(self) -> Path:
        return self.path / "zookeeper.digest"

    def node_cert(self, node: str) -> Path:
        return self.path / "nodes" / f"{node}.pem"

    def node_key(self, node: str) -> Path:
        return self.path / "nodes" / f"{node}.key"

    def client_cert(self, name: str) -> Path:
        return self.path / "clients" / f"{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.path / "clients" / f"{name}.key"

    def clients(self) -> list[str]:
        folder = self.path / "clients"
        return sorted(p.stem for p in folder.glob("*.pem")) if folder.is_dir() else []


def require(paths: list[Path], *, cluster_file: Path, what: str) -> None:
    """Raise SecretsError unless every path exists, is readable and private (keys)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        names = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise SecretsError(f"{what}: missing {names}; create the cluster's secrets with "
                           f"`quorapay -c {cluster_file} init --secrets-only`")
    for path in paths:
        if path.suffix in (".key", ".digest") and _open_to_others(path):
            raise SecretsError(f"{path} is readable by other users: `chmod 600 {path}` "
                               "(and consider it compromised)")


def read_zookeeper_credential(secrets: SecretsDir, *, cluster_file: Path) -> tuple[str, str]:
    """(user, password) of the ZooKeeper digest credential."""
    require([secrets.zookeeper], cluster_file=cluster_file, what="ZooKeeper credential")
    try:
        user, _, password = secrets.zookeeper.read_text().strip().partition(":")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError(f"cannot read {secrets.zookeeper}: {exc}") from None
    if not user or not password:
        raise SecretsError(f"{secrets.zookeeper} must hold \"user:password\"")
    return user, password


def _open_to_others(path: Path) -> bool:
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except OSError:
        return False


def require_cluster_secrets(secrets: SecretsDir, nodes: list[str], *, cluster_file: Path) -> None:
    """Everything the given nodes need to start, and the operator's credential that `up` watches
    them with (SecretsError naming what is missing)."""
    paths = [secrets.ca_cert, secrets.zookeeper, secrets.client_cert(OPERATOR),
             secrets.client_key(OPERATOR)]
    for node in nodes:
        paths += [secrets.node_cert(node), secrets.node_key(node)]
    require(paths, cluster_file=cluster_file, what="the cluster's secrets")
