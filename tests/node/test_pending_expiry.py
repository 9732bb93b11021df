"""A pending transfer with a timeout, through the production executor and SQLite: it waits on
disk across a restart, and an idle leader appends the entry that expires it."""

from pathlib import Path

from quorapay.core.inputs import ClockRead, LeadershipGranted, Ticked
from quorapay.core.ledger import Status
from quorapay.core.node_state import Write
from quorapay.core.types import PENDING, AccountId, Cents, Epoch, Transfer, TransferId
from tests.core.harness import account, transfer
from tests.node.test_storage import boot, open_store, run, settled

START_MS = 1_800_000_000_000


def reservation() -> Transfer:
    return Transfer(id=TransferId("hold"), debit=AccountId("alice"), credit=AccountId("bob"),
                    amount=Cents(400), currency="USD", flags=PENDING, timeout_ms=5_000)


def test_a_pending_transfer_waits_across_a_restart_and_expires_on_an_idle_log(
        tmp_path: Path) -> None:
    store = open_store(tmp_path)
    replica, ledger = boot(store)
    run(store, replica, ledger, settled([
        [ClockRead(wall_ms=START_MS), LeadershipGranted(epoch=Epoch(1))],
        [Write(key=1, commands=(account("bank", issuer=True), account("alice"),
                                account("bob")))],
        [Write(key=2, commands=(transfer("fund", "bank", "alice", 1000), reservation()))]]))
    store.close()

    store = open_store(tmp_path)  # a restart: the reservation is on disk, and still waits
    replica, ledger = boot(store)
    due = ledger.next_expiry()
    assert due is not None and START_MS + 5_000 <= due < START_MS + 6_000
    assert ledger.accounts[AccountId("alice")].debits_pending == 400
    ticks = [[ClockRead(wall_ms=due - 1), Ticked()]] * 20  # not yet: nothing is appended
    run(store, replica, ledger, [[ClockRead(wall_ms=due - 1), LeadershipGranted(
        epoch=Epoch(2))], *ticks])
    assert ledger.next_expiry() == due
    last = replica.log.last_index
    run(store, replica, ledger, settled([[ClockRead(wall_ms=due), Ticked()]] * 3))
    assert replica.log.last_index == last + 1  # one entry, however many ticks
    assert ledger.next_expiry() is None
    assert ledger.accounts[AccountId("alice")].debits_pending == 0
    store.close()

    store = open_store(tmp_path)
    _, ledger = boot(store)
    record = ledger.transfer(TransferId("hold#resolution"))
    assert record is not None and record.status is Status.EXPIRED
    assert ledger.next_expiry() is None and ledger.digest() == ledger.recount_digest()
    store.close()
