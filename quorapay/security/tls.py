"""TLS 1.3 contexts from a cluster's secrets: the only place certificates meet sockets' settings.

Nodes present their certificate on both ports. On the peer port they require one of the cluster's
node certificates; on the client port they ask for a client certificate and authorize by its
role (a connection without one is answered 401 by the websocket layer, so the client hears why).
A node dialing a peer checks the peer's identity by the node its certificate names, not by host
name (a route may go through a proxy); clients check the host name as any TLS client does, and
trust only the cluster's CA.
"""

from __future__ import annotations

import ssl

from quorapay.config import ClusterConfig
from quorapay.security.secrets import OPERATOR, SecretsDir, SecretsError, require


def node_server_context(cluster: ClusterConfig, node: str, *, clients: bool) -> ssl.SSLContext:
    """For a node's listener: the peer port (`clients` False) or the client port."""
    secrets = _secrets(cluster)
    cert, key = secrets.node_cert(node), secrets.node_key(node)
    require([secrets.ca_cert, cert, key], cluster_file=cluster.path,
            what=f"TLS credentials of node {node}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    _load(context, secrets, cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL if clients else ssl.CERT_REQUIRED
    return context


def node_client_context(cluster: ClusterConfig, node: str) -> ssl.SSLContext:
    """For a node dialing a peer: its own certificate; the peer is checked by identity."""
    secrets = _secrets(cluster)
    cert, key = secrets.node_cert(node), secrets.node_key(node)
    require([secrets.ca_cert, cert, key], cluster_file=cluster.path,
            what=f"TLS credentials of node {node}")
    context = _client_base()
    context.check_hostname = False  # the peer's node id is checked instead (transport.dial)
    _load(context, secrets, cert, key)
    return context


def credential_context(cluster: ClusterConfig, credential: str) -> ssl.SSLContext:
    """For a client (the CLI, tools, the Python client) holding credential `credential`."""
    secrets = _secrets(cluster)
    cert, key = secrets.client_cert(credential), secrets.client_key(credential)
    if not cert.exists() and secrets.ca_cert.exists():
        known = ", ".join(secrets.clients()) or "none"
        role = "operator" if credential == OPERATOR else "payer"
        raise SecretsError(f"no client credential {credential!r} in {secrets.path} (there: "
                           f"{known}); `quorapay credential issue {credential} --role {role}` "
                           "makes one")
    require([secrets.ca_cert, cert, key], cluster_file=cluster.path,
            what=f"client credential {credential!r}")
    context = _client_base()
    _load(context, secrets, cert, key)
    return context


def _client_base() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks host names
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def _load(context: ssl.SSLContext, secrets: SecretsDir, cert: object, key: object) -> None:
    try:
        context.load_verify_locations(cafile=str(secrets.ca_cert))
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ssl.SSLError) as exc:
        raise SecretsError(f"cannot load TLS credentials from {secrets.path}: {exc}") from None


def _secrets(cluster: ClusterConfig) -> SecretsDir:
    return SecretsDir(cluster.security.secrets_dir)


def client_tls(cluster: ClusterConfig, credential: str = OPERATOR) -> ssl.SSLContext | None:
    """The TLS context a client of `cluster` holding `credential` uses (None in an insecure
    benchmark, whose nodes speak plain ws://)."""
    if cluster.security.insecure:
        return None
    return credential_context(cluster, credential)
