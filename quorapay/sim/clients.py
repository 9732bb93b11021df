"""Simulated clients: transfers between funded accounts and linearizable reads.

The writes mix every kind the ledger has: plain transfers, linked chains, balancing transfers,
pending transfers with timeouts (expiring by the log's time, across failovers and skewed
clocks), and posts and voids of a client's earlier pending transfers.

A client does one operation at a time. It sends it to the node it believes leads (a read, one
time in three, to any node: a deposed leader that does not know it yet is reached so), follows
NOT_LEADER hints, and retries everything else -- UNAVAILABLE, TIMEOUT, silence -- with the same
request, hence the same transfer ids, until it gets a definitive answer. The first client also
opens and funds the accounts before anyone transfers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quorapay.core.node_state import Committed, ErrorCode, Failure, ReadValue
from quorapay.core.types import (
    BALANCING_DEBIT,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    AccountId,
    Cents,
    Command,
    CreateAccount,
    Linked,
    Transfer,
    TransferId,
)
from quorapay.sim.invariants import Checker
from quorapay.sim.network import Network
from quorapay.sim.world import World

if TYPE_CHECKING:
    from quorapay.sim.node import SimNode

ANSWER_TIMEOUT = 1.5
BACKOFF = 0.05
THINK = (0.001, 0.05)
ISSUER = "bank"
READ_ANYWHERE = 0.3  # reads sent to any node, not the one believed to lead


@dataclass(slots=True)
class _Op:
    number: int
    commands: tuple[Command, ...] | None  # None for a read
    accounts: tuple[str, ...] = ()
    attempt: int = 0
    barrier: bool = False


@dataclass(slots=True)
class ClientStats:
    writes: int = 0
    reads: int = 0
    retries: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # failures answered, by error code


class SimClient:
    def __init__(self, world: World, network: Network, name: str, nodes: list[SimNode],
                 checker: Checker, accounts: list[str], *, opens_accounts: bool,
                 reader: bool = False) -> None:
        self.name = name
        self.reader = reader  # reads only, from every node in turn (a monitor polling them)
        self._turn = 0
        # read attempts out: their floors, and the accounts asked for
        self._read_floors: dict[tuple[int, int], tuple[int, tuple[str, ...]]] = {}
        self.network = network
        self._world, self._network, self._nodes = world, network, nodes
        self._checker = checker
        self._accounts = accounts
        self._setup = self._setup_ops() if opens_accounts else []
        self._op: _Op | None = None
        self._count = 0
        self._leader: str | None = None
        self.stopped = False
        self.stats = ClientStats()
        self.barrier_index: int | None = None
        self._pending: list[str] = []  # its pending transfers it may post or void
        for node in nodes:
            node.clients[name] = self.on_answer

    def _setup_ops(self) -> list[tuple[Command, ...]]:
        opened = tuple(CreateAccount(id=AccountId(a), currency="USD", allow_negative=a == ISSUER)
                       for a in [ISSUER, *self._accounts])
        funded = tuple(Transfer(id=TransferId(f"fund-{a}"), debit=AccountId(ISSUER),
                                credit=AccountId(a), amount=Cents(1000), currency="USD")
                       for a in self._accounts)
        return [opened, funded]

    def start(self, delay: float) -> None:
        self._world.at(delay, self._next)

    @property
    def idle(self) -> bool:
        """No operation waiting for an answer."""
        return self._op is None

    def barrier(self) -> None:
        """After the faults: commit an empty entry, to show writes commit again."""
        self.stopped = True
        self._count += 1
        self._op = _Op(number=self._count, commands=(), barrier=True)
        self._send()

    # ------------------------------------------------------------------ operations

    def _next(self) -> None:
        if self.stopped:
            return
        self._count += 1
        if self._setup:
            self._op = _Op(number=self._count, commands=self._setup.pop(0))
        elif not self.reader and self._world.rng.random() < 0.8:
            self._op = _Op(number=self._count, commands=(self._write(),))
        else:
            accounts = tuple(self._world.rng.sample(self._accounts, 2))
            self._op = _Op(number=self._count, commands=None, accounts=accounts)
        self._send()

    def _write(self) -> Command:
        """One write: a transfer most often, else one of the other kinds."""
        rng, tid = self._world.rng, f"{self.name}-{self._count}"
        kind = rng.random()
        if kind < 0.1 and self._pending:
            pending_id = self._pending.pop(rng.randrange(len(self._pending)))
            post = rng.random() < 0.6
            return Transfer(id=TransferId(tid), debit=AccountId(""), credit=AccountId(""),
                            amount=Cents(rng.choice([0, 1, 50]) if post else 0), currency="",
                            flags=POST_PENDING if post else VOID_PENDING,
                            pending_id=TransferId(pending_id))
        if kind < 0.2:
            self._pending.append(tid)
            return self._transfer(tid, flags=PENDING, timeout_ms=rng.choice([0, 200, 2000]))
        if kind < 0.3:
            return Linked(commands=(self._transfer(f"{tid}-a"), self._transfer(f"{tid}-b")))
        if kind < 0.35:
            return self._transfer(tid, flags=BALANCING_DEBIT)
        return self._transfer(tid)

    def _transfer(self, tid: str, *, flags: int = 0, timeout_ms: int = 0) -> Transfer:
        rng = self._world.rng
        debit, credit = rng.sample(self._accounts, 2)
        return Transfer(id=TransferId(tid), debit=AccountId(debit), credit=AccountId(credit),
                        amount=Cents(rng.randint(1, 300)), currency="USD", flags=flags,
                        timeout_ms=timeout_ms)

    def _send(self) -> None:
        from quorapay.sim.node import ClientRequest

        op = self._op
        assert op is not None
        op.attempt += 1
        if op.attempt > 1:
            self.stats.retries += 1
        rng = self._world.rng
        if self.reader:
            self._turn += 1
            target = self._nodes[self._turn % len(self._nodes)]
        else:
            anywhere = op.commands is None and rng.random() < READ_ANYWHERE
            up = [] if anywhere else [n for n in self._nodes if n.id == self._leader]
            target = rng.choice(up or self._nodes)
        if op.commands is None:  # what this attempt must reflect: all acknowledged by now
            self._read_floors[(op.number, op.attempt)] = (self._checker.highest_acknowledged,
                                                          op.accounts)
        request = ClientRequest(client=self.name, op=op.number, attempt=op.attempt,
                                commands=op.commands, accounts=op.accounts)
        self._network.send(self.name, target.id, target.process.call, target.process.incarnation,
                           target.deliver, request)
        self._world.at(ANSWER_TIMEOUT, self._silence, op.number, op.attempt)

    def _silence(self, number: int, attempt: int) -> None:
        op = self._op
        if op is not None and (op.number, op.attempt) == (number, attempt):
            self._leader = None
            if self.reader:
                self._op = None
                self._next()
                return
            self._send()

    def on_answer(self, number: int, attempt: int, node: str,
                  answer: Committed | ReadValue | Failure) -> None:
        asked = self._read_floors.pop((number, attempt), None)
        if isinstance(answer, ReadValue) and asked is not None:
            # every read answered is checked, also one to an attempt given up on
            self._checker.read(self.name, answer.index, asked[0], answer.value, asked[1])
        op = self._op
        if op is None or (op.number, op.attempt) != (number, attempt):
            return  # an answer to an attempt we gave up on
        if isinstance(answer, Failure) and self.reader:
            self._op = None  # a monitor moves on to the next node
            self._world.at(self._world.rng.uniform(*THINK), self._next)
            return
        if isinstance(answer, Failure):
            self.stats.errors[answer.code.value] = self.stats.errors.get(answer.code.value, 0) + 1
            self._leader = answer.leader if answer.code is ErrorCode.NOT_LEADER else None
            delay = 0.0 if answer.code is ErrorCode.NOT_LEADER and answer.leader else BACKOFF
            self._world.at(delay, self._retry, number, attempt)
            return
        self._leader = node
        self._op = None
        if isinstance(answer, Committed):
            self._record_write(op, answer)
        else:
            self.stats.reads += 1
        self._world.at(self._world.rng.uniform(*THINK), self._next)

    def _retry(self, number: int, attempt: int) -> None:
        op = self._op
        if op is not None and (op.number, op.attempt) == (number, attempt):
            self._send()

    def _record_write(self, op: _Op, answer: Committed) -> None:
        if op.barrier:
            self.barrier_index = answer.index
            return
        self.stats.writes += 1
        assert op.commands is not None
        for command, result in zip(op.commands, answer.results, strict=True):
            members = zip(command.commands, result.members, strict=True) \
                if isinstance(command, Linked) else ((command, result),)
            for each, told in members:
                self.stats.outcomes[told.status.value] = (
                    self.stats.outcomes.get(told.status.value, 0) + 1)
                if isinstance(each, Transfer):
                    self._checker.acknowledge(each, told.status.value, told.index)
