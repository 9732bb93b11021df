"""Creating a cluster's secrets with the `cryptography` package: its CA, a certificate per node and
per client credential, and the ZooKeeper password. No hand-written crypto.

Keys are ECDSA P-256 (fast TLS 1.3 handshakes). The CA is valid 10 years and signs only leaf
certificates (path length 0); leaves are valid 5 years. A node's certificate names the node
(`urn:quorapay:<cluster>:node:<id>`) and its host (an IP or DNS name, so that a client checking
host names accepts it), for server and client authentication; a client's names its role and name,
for client authentication only, so it can never pose as a node.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets as random_source
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from quorapay.config import ClusterConfig, NodeConfig
from quorapay.files import private_dir, write_private
from quorapay.security.identity import Principal, Role, principal_of
from quorapay.security.secrets import OPERATOR, PAYER, SecretsDir, SecretsError

CA_YEARS = 10
LEAF_YEARS = 5
ZOOKEEPER_USER = "quorapay"


def ensure_secrets(cluster: ClusterConfig, *, clients: Iterable[tuple[str, Role]] = (
        (OPERATOR, Role.OPERATOR), (PAYER, Role.PAYER))) -> list[str]:
    """Create whatever of the cluster's secrets is missing; return the files written. A node
    certificate that no longer matches the cluster file (host, cluster name) is issued again.
    The CA's key is read only if something must be signed (it may be kept offline)."""
    secrets = SecretsDir(cluster.security.secrets_dir)
    try:
        return [str(p) for p in _ensure(cluster, secrets, list(clients))]
    except OSError as exc:
        raise SecretsError(f"cannot write the secrets in {secrets.path}: "
                           f"{exc.strerror or exc}") from None


def _ensure(cluster: ClusterConfig, secrets: SecretsDir, clients: list[tuple[str, Role]]
            ) -> list[Path]:
    private_dir(secrets.path)
    written: list[Path] = []
    if not secrets.ca_cert.exists():
        if any(secrets.path.rglob("*.pem")):
            raise SecretsError(f"{secrets.path} holds certificates but no ca.pem: move it away "
                               "to start over with a new CA")
        written += _create_ca(secrets, cluster.name)
    check_owner(cluster)
    stale = [n for n in cluster.nodes if not _node_matches(secrets, n, cluster.name)]
    missing = [(name, role) for name, role in clients if not secrets.client_cert(name).exists()]
    if stale or missing:
        ca_cert, ca_key = _load_ca(secrets)
        for node in stale:
            principal = Principal(cluster=cluster.name, role=Role.NODE, name=node.id)
            written += _issue(secrets.node_cert(node.id), secrets.node_key(node.id), ca_cert,
                              ca_key, principal, host=node.host)
        for name, role in missing:
            written += issue_client(cluster, name, role)
    if not secrets.zookeeper.exists():
        password = random_source.token_urlsafe(32)
        write_private(secrets.zookeeper, f"{ZOOKEEPER_USER}:{password}\n")
        written.append(secrets.zookeeper)
    return written


def check_owner(cluster: ClusterConfig) -> None:
    """SecretsError if the secrets dir holds the CA of another cluster (by name)."""
    secrets = SecretsDir(cluster.security.secrets_dir)
    if not secrets.ca_cert.exists():
        return
    ca_cert = _load_ca_certificate(secrets)
    owners = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    owner = str(owners[0].value) if owners else "?"
    if owner != cluster.name:
        raise SecretsError(f"the secrets in {secrets.path} belong to cluster {owner!r}, not "
                           f"{cluster.name!r}: set security.secrets_dir, or move them away")


def issue_client(cluster: ClusterConfig, name: str, role: Role) -> list[Path]:
    """A new client credential `name` of `role`, signed by the cluster's CA."""
    if role is Role.NODE:
        raise SecretsError("a client credential is a payer's or an operator's")
    secrets = SecretsDir(cluster.security.secrets_dir)
    ca_cert, ca_key = _load_ca(secrets)
    principal = Principal(cluster=cluster.name, role=role, name=name)
    try:
        return _issue(secrets.client_cert(name), secrets.client_key(name), ca_cert, ca_key,
                      principal, host=None)
    except OSError as exc:
        raise SecretsError(f"cannot write {name}'s credential in {secrets.path}: "
                           f"{exc.strerror or exc}") from None


def _create_ca(secrets: SecretsDir, cluster: str) -> list[Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Quorapay CA of {cluster}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    _write_key(secrets.ca_key, key)
    write_private(secrets.ca_cert, certificate.public_bytes(serialization.Encoding.PEM))
    return [secrets.ca_cert, secrets.ca_key]


def _issue(cert_path: Path, key_path: Path, ca_cert: x509.Certificate,
           ca_key: ec.EllipticCurvePrivateKey, principal: Principal, *,
           host: str | None) -> list[Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(principal.uri)]
    if host is not None:
        names.append(_host_name(host))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if principal.role is Role.NODE:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, principal.cluster),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, principal.role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, principal.name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * LEAF_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return [cert_path, key_path]


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _load_ca_certificate(secrets: SecretsDir) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(secrets.ca_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot load the cluster CA from {secrets.ca_cert}: {exc}") from None


def _load_ca(secrets: SecretsDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certificate = _load_ca_certificate(secrets)
    try:
        key = serialization.load_pem_private_key(secrets.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot load the CA's key {secrets.ca_key} (needed to sign new "
                           f"credentials): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecretsError(f"{secrets.ca_key} is not an EC key")
    return certificate, key


def _node_matches(secrets: SecretsDir, node: NodeConfig, cluster: str) -> bool:
    """Whether the node's certificate exists and names this node, cluster and host."""
    try:
        certificate = x509.load_pem_x509_certificate(secrets.node_cert(node.id).read_bytes())
    except (OSError, ValueError):
        return False
    if not secrets.node_key(node.id).exists():
        return False
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    uris = [("URI", u) for u in names.get_values_for_type(x509.UniformResourceIdentifier)]
    principal = principal_of({"subjectAltName": uris}, cluster)
    return (principal == Principal(cluster=cluster, role=Role.NODE, name=node.id)
            and _host_name(node.host) in list(names))
