"""`quorapay credential`: the client credentials in a cluster's secrets dir."""

from __future__ import annotations

import re

import click

from quorapay.cli.context import AppContext, emit, json_option, pass_app
from quorapay.cli.main import Failed, cli
from quorapay.security.identity import CLIENT_ROLES, Role
from quorapay.security.issue import issue_client
from quorapay.security.secrets import SecretsDir

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@cli.group()
def credential() -> None:
    """Client credentials (certificates of the cluster's CA) for payers and operators."""


@credential.command("issue")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in CLIENT_ROLES]), required=True,
              help="payer: accounts, transfers, balances; operator: also status, verify, chaos.")
@json_option
@pass_app
def issue(app: AppContext, name: str, role: str, as_json: bool) -> None:
    """Sign a new credential NAME for ROLE; give the holder its .pem and .key files."""
    if not _NAME.fullmatch(name):
        raise Failed("a credential name is 1-64 characters of A-Z a-z 0-9 _ . -")
    secrets = SecretsDir(app.cluster.security.secrets_dir)
    if secrets.client_cert(name).exists():
        raise Failed(f"credential {name!r} exists ({secrets.client_cert(name)})")
    written = issue_client(app.cluster, name, Role(role))
    emit(as_json, {"name": name, "role": role, "files": [str(p) for p in written]},
         f"issued {role} credential {name!r}: {', '.join(str(p) for p in written)}")


@credential.command("list")
@json_option
@pass_app
def list_credentials(app: AppContext, as_json: bool) -> None:
    """The client credentials in the secrets dir."""
    names = SecretsDir(app.cluster.security.secrets_dir).clients()
    emit(as_json, {"credentials": names}, "\n".join(names) or "no client credentials")
