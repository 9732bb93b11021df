"""Digests that cost what changed: the ledger's kept state digest, checkpointed log digests."""

import random

import msgspec

from quorapay.core import digest as digest_module
from quorapay.core.digest import LogDigests, log_digest, replay
from quorapay.core.hlc import Timestamp
from quorapay.core.ledger import Delta, Ledger
from quorapay.core.log import Log
from quorapay.core.types import Commands, Epoch, LogEntry, LogIndex
from tests.core.harness import account, transfer

real_hash = digest_module.entry_hash


def entries(count: int, *, seed: int = 1, stall_at: int | None = None) -> list[LogEntry]:
    """A log of accounts, then random transfers (some failing), one or two per entry."""
    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    made = [LogEntry(index=LogIndex(1), epoch=Epoch(1), ts=Timestamp(1000, 0),
                     payload=Commands(commands=(account("bank", issuer=True),
                                                *(account(n) for n in names))))]
    for index in range(2, count + 1):
        pairs = [rng.sample(["bank", *names], 2) for _ in range(rng.randint(1, 2))]
        commands = tuple(transfer(f"t{index}.{k}", debit, credit, rng.randint(1, 50))
                         for k, (debit, credit) in enumerate(pairs))
        wall = 1000 + index if index != stall_at else 1000 + index - 1
        made.append(LogEntry(index=LogIndex(index), epoch=Epoch(1), ts=Timestamp(wall, 0),
                             payload=Commands(commands=commands)))
    return made


def test_the_kept_state_digest_equals_a_recount_and_ignores_the_order_rows_came_in() -> None:
    log = entries(300)
    ledger = replay(log)
    assert ledger.digest() == ledger.recount_digest()
    assert ledger.totals() == ledger.recount_totals() == {"USD": 0}
    rebuilt = Ledger.from_state(ledger.export())  # rows in id order, not in log order
    assert rebuilt.digest() == ledger.digest()
    assert replay(log[:-1]).digest() != ledger.digest()  # one entry less: another state
    copied = ledger.copy()
    a = copied.accounts["a"]  # a change outside apply: only a recount sees it
    copied._accounts["a"] = msgspec.structs.replace(a, balance=a.balance + 1)
    assert copied.recount_digest() != copied.digest() == ledger.digest()


def test_log_digests_of_any_range_equal_the_digest_of_its_entries() -> None:
    made = entries(5000)
    log = Log(made)
    digests = LogDigests(every=64)
    rng = random.Random(7)
    for _ in range(60):
        after = rng.randint(0, 4990)
        upto = rng.randint(after, 5000)
        facts = digests.plan(log, after, upto)()
        assert facts.log_digest == log_digest(made[after:upto]), (after, upto)
        assert facts.unordered_at is None


def test_log_digests_hash_only_what_is_new_and_survive_compaction(monkeypatch) -> None:
    made = entries(3000, stall_at=2500)
    log = Log(made[:1000])
    digests = LogDigests(every=100)
    assert digests.plan(log, 0, 1000)().log_digest == log_digest(made[:1000])
    for entry in made[1000:]:
        log.append(entry)
    hashed: list[int] = []
    monkeypatch.setattr(digest_module, "entry_hash",
                        lambda e: hashed.append(e.index) or real_hash(e))
    facts = digests.plan(log, 0, 3000)()
    assert hashed == list(range(1001, 3001))  # only the entries since the last check
    monkeypatch.undo()
    assert facts.log_digest == log_digest(made) and facts.unordered_at == 2500
    log.compact(LogIndex(2050))
    facts = digests.plan(log, 2050, 3000)()
    assert facts.log_digest == log_digest(made[2050:]) and facts.unordered_at == 2500
    assert digests.plan(log, 2600, 3000)().unordered_at is None


def test_a_fold_computed_aside_keeps_only_what_it_saw_and_a_lost_one_loses_nothing() -> None:
    log = entries(400)
    ledger = replay(log[:200])
    lost = ledger.fold()
    lost.compute()  # never merged (its caller gave up): as if never made
    fold = ledger.fold()
    at_fold = fold.compute()
    for entry in log[200:300]:  # the ledger goes on while the fold is computed aside
        ledger.apply(entry, Delta())
    assert at_fold == replay(log[:200]).recount_digest()
    fold.merge(ledger)
    assert ledger.digest() == ledger.recount_digest() == replay(log[:300]).recount_digest()
    stale = ledger.fold()
    stale.compute()
    ledger.replace(replay(log[:50]).export())  # a snapshot installed meanwhile
    stale.merge(ledger)
    assert ledger.digest() == replay(log[:50]).recount_digest()


def test_a_replaced_entry_below_a_checkpoint_drops_the_kept_sums() -> None:
    """Committed entries never change -- unless a bug changes them: then a checkpoint's epoch
    no longer matches, and the next check hashes the range afresh."""
    made = entries(1200)
    log = Log(made)
    digests = LogDigests(every=100)
    before = digests.plan(log, 0, 1000)()
    log.truncate_after(899)
    for entry in made[899:]:
        log.append(LogEntry(index=entry.index, epoch=Epoch(2), ts=entry.ts,
                            payload=entry.payload))
    after = digests.plan(log, 0, 1000)()
    assert after.log_digest != before.log_digest
    assert after.log_digest == log_digest(log.slice(1, 1000))
