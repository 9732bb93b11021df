"""Entry point: the root group, and the one place a QuorapayError becomes an error line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from quorapay.cli.context import AppContext
from quorapay.core.errors import QuorapayError
from quorapay.files import PRIVATE_UMASK
from quorapay.security.secrets import OPERATOR


class Failed(click.ClickException):
    """An expected failure: one line on stderr and the exit code chosen for it."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


class QuorapayGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QuorapayError as exc:
            raise Failed(str(exc)) from None
        except KeyboardInterrupt:
            raise Failed("interrupted", exit_code=130) from None
        except BaseExceptionGroup as group:  # raised in a nursery: report the first as usual
            if group.split(KeyboardInterrupt)[0] is not None:
                raise Failed("interrupted", exit_code=130) from None
            expected = _expected(group)
            if expected is None:
                raise
            raise Failed(str(expected)) from None


def _expected(group: BaseExceptionGroup[BaseException]) -> QuorapayError | None:
    """The first QuorapayError of a group holding nothing else (cancellations aside)."""
    errors, rest = group.split(QuorapayError)
    if errors is None or (rest is not None and rest.split(KeyboardInterrupt)[1] is not None):
        return None
    first: BaseException = errors
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, QuorapayError)
    return first


@click.group(cls=QuorapayGroup)
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("cluster.toml"), envvar="QUORAPAY_CONFIG", show_default=True,
              help="The cluster file.")
@click.option("--credential", default=OPERATOR, envvar="QUORAPAY_CREDENTIAL",
              show_default=True, metavar="NAME",
              help="The client credential (in the secrets dir's clients/) that account, pay, "
                   "balance and transfer use.")
@click.version_option(package_name="quorapay")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, credential: str) -> None:
    """Quorapay: a replicated payment ledger with a ZooKeeper-elected leader."""
    ctx.obj = AppContext(config_path=config_path, credential=credential)
    if credential != OPERATOR and ctx.invoked_subcommand in OPERATOR_TOOLS:
        click.echo(f"note: {ctx.invoked_subcommand} is an operator tool and uses the operator "
                   f"credential; --credential {credential} applies to "
                   f"{', '.join(sorted(CREDENTIAL_COMMANDS))}", err=True)


CREDENTIAL_COMMANDS = {"account", "pay", "chain", "post", "void", "balance", "transfer"}
OPERATOR_TOOLS = {"up", "status", "verify", "workload", "check", "chaos", "switchover", "backup",
                  "restore"}


def main() -> None:
    os.umask(PRIVATE_UMASK)  # whatever a command creates is for this user only
    cli(prog_name="quorapay")


# The command modules attach themselves to `cli`; importing them here makes `cli` complete.
from quorapay.cli import (  # noqa: E402, F401
    backup,
    bench,
    chaos,
    chaos_clock,
    check,
    cluster,
    credentials,
    ledger,
    logs,
    node,
    sim,
    status,
    switchover,
    verify,
    workload,
)
