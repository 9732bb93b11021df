"""A model of one ZooKeeper server, for the simulator and for tests of the coordinator.

What it keeps of ZooKeeper's semantics: a tree of znodes with data and versions; ephemeral znodes
owned by a session and deleted when it ends; sequential names from the parent's counter; one-shot
watches per session (set by Get or Exists, fired by create, set or delete of that path); atomic
multi-operation transactions; and sessions that expire when the server has not heard from them
for their timeout. Pure and deterministic: time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from quorapay.core.coordinator import (
    ClaimEpoch,
    Create,
    Delete,
    EnsurePath,
    Exists,
    Get,
    GetChildren,
    Stat,
    ZkError,
    ZkOp,
)

Fired = list[tuple[int, str]]  # (session, path) watch notifications to deliver


@dataclass(slots=True)
class _Znode:
    data: bytes
    version: int = 0
    owner: int = 0  # ephemeral owner session, 0 if persistent
    sequence: int = 0  # the next sequential child number


@dataclass(slots=True)
class _Session:
    timeout: float
    last_heard: float


class _Failed(Exception):
    def __init__(self, error: ZkError) -> None:
        self.error = error


class ZooKeeperModel:
    def __init__(self) -> None:
        self._znodes: dict[str, _Znode] = {"/": _Znode(data=b"")}
        self._sessions: dict[int, _Session] = {}
        self._watches: dict[str, set[int]] = {}
        self._next_session = 0x1000

    # ------------------------------------------------------------------ sessions

    def open_session(self, now: float, timeout: float) -> int:
        self._next_session += 1
        self._sessions[self._next_session] = _Session(timeout=timeout, last_heard=now)
        return self._next_session

    def alive(self, session: int) -> bool:
        return session in self._sessions

    def heard_from(self, session: int, now: float) -> None:
        if session in self._sessions:
            self._sessions[session].last_heard = now

    def expire_due(self, now: float) -> tuple[list[int], Fired]:
        """End every session not heard from for its timeout; return them and the watches fired."""
        expired = [s for s, state in self._sessions.items()
                   if now - state.last_heard >= state.timeout]
        fired: Fired = []
        for session in expired:
            fired += self.close_session(session)
        return expired, fired

    def close_session(self, session: int) -> Fired:
        self._sessions.pop(session, None)
        for watchers in self._watches.values():
            watchers.discard(session)
        fired: Fired = []
        for path in sorted(p for p, z in self._znodes.items() if z.owner == session):
            fired += self._remove(path)
        return fired

    # ------------------------------------------------------------------ operations

    def execute(self, session: int, op: ZkOp) -> tuple[Any, ZkError | None, Fired]:
        """Apply `op` for `session` atomically: (result, error, watches fired)."""
        if session not in self._sessions:
            return None, ZkError.SESSION_EXPIRED, []
        fired: Fired = []
        try:
            return self._apply(session, op, fired), None, fired
        except _Failed as failed:
            return None, failed.error, []

    def _apply(self, session: int, op: ZkOp, fired: Fired) -> Any:
        match op:
            case EnsurePath(path=path):
                partial = ""
                for part in path.strip("/").split("/"):
                    partial += "/" + part
                    if partial not in self._znodes:
                        self._create(partial, b"", 0, fired)
                return None
            case Create(path=path, data=data, ephemeral=ephemeral, sequential=sequential):
                if sequential:
                    parent = self._parent_of(path)
                    path = f"{path}{parent.sequence:010d}"
                    parent.sequence += 1
                if path in self._znodes:
                    raise _Failed(ZkError.NODE_EXISTS)
                self._create(path, data, session if ephemeral else 0, fired)
                return path
            case Get(path=path, watch=watch):
                znode = self._find(path)
                if watch:
                    self._watches.setdefault(path, set()).add(session)
                return znode.data, Stat(version=znode.version, owner=znode.owner)
            case GetChildren(path=path):
                self._find(path)
                prefix = path.rstrip("/") + "/"
                return tuple(sorted(p[len(prefix):] for p in self._znodes
                                    if p.startswith(prefix) and "/" not in p[len(prefix):]))
            case Exists(path=path, watch=watch):
                if watch:
                    self._watches.setdefault(path, set()).add(session)
                found = self._znodes.get(path)
                return None if found is None else Stat(version=found.version, owner=found.owner)
            case Delete(path=path, version=version):
                znode = self._find(path)
                if version not in (-1, znode.version):
                    raise _Failed(ZkError.BAD_VERSION)
                fired += self._remove(path)
                return None
            case ClaimEpoch():
                epoch = self._find(op.epoch_path)
                if epoch.version != op.epoch_version:
                    raise _Failed(ZkError.BAD_VERSION)
                if op.leader_path in self._znodes:
                    raise _Failed(ZkError.NODE_EXISTS)
                epoch.data, epoch.version = op.epoch_data, epoch.version + 1
                fired += self._fire(op.epoch_path)
                self._create(op.leader_path, op.leader_data, session, fired)
                return None
            case _:
                assert_never(op)

    def _find(self, path: str) -> _Znode:
        znode = self._znodes.get(path)
        if znode is None:
            raise _Failed(ZkError.NO_NODE)
        return znode

    def _parent_of(self, path: str) -> _Znode:
        return self._find(path.rsplit("/", 1)[0] or "/")

    def _create(self, path: str, data: bytes, owner: int, fired: Fired) -> None:
        self._parent_of(path)
        self._znodes[path] = _Znode(data=data, owner=owner)
        fired += self._fire(path)

    def _remove(self, path: str) -> Fired:
        del self._znodes[path]
        return self._fire(path)

    def _fire(self, path: str) -> Fired:
        return [(session, path) for session in sorted(self._watches.pop(path, set()))]

    def data(self, path: str) -> bytes | None:
        """For observers (tests, invariants): a znode's data, or None."""
        znode = self._znodes.get(path)
        return None if znode is None else znode.data
