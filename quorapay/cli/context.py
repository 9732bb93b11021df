"""What every command shares: the cluster file, loaded on first use, and output helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
import trio

from quorapay.client import Client
from quorapay.config import ClusterConfig, load_config
from quorapay.security.access import cluster_client
from quorapay.security.secrets import OPERATOR

T = TypeVar("T")


@dataclass(slots=True)
class AppContext:
    config_path: Path
    credential: str = OPERATOR
    _cluster: ClusterConfig | None = field(default=None)

    @property
    def cluster(self) -> ClusterConfig:
        if self._cluster is None:
            self._cluster = load_config(self.config_path)
        return self._cluster

    def client(self, **options: Any) -> Client:
        """A client of the cluster holding the credential chosen (--credential)."""
        return cluster_client(self.cluster, credential=self.credential, **options)


pass_app = click.make_pass_decorator(AppContext)
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as JSON (fields documented in docs/01-api).")


def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return trio.run(fn, *args)


def emit(as_json: bool, value: Any, text: str) -> None:
    """Print `value` as JSON, or `text` for people."""
    click.echo(msgspec.json.encode(value).decode() if as_json else text)
