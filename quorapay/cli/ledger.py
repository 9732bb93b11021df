"""account create/close/reopen, pay, chain, post, void, balance, transfer: the ledger from
the command line."""

from __future__ import annotations

import uuid

import click

from quorapay.api import schema as api
from quorapay.cli.context import AppContext, emit, json_option, pass_app, run
from quorapay.cli.main import Failed, cli
from quorapay.cli.progress import progress

currency_option = click.option("--currency", default="USD", show_default=True,
                               help="Currency code (upper case).")


async def _ask(app: AppContext, request: api.Request, as_json: bool) -> api.Response:
    """One request, retried until an outcome or the deadline -- saying so on a terminal."""
    deadline = app.cluster.timing.request_timeout * 3
    with progress("asking the cluster", total=None, as_json=as_json) as shown:
        async with app.client(deadline=deadline, on_retry=lambda why: shown.update(
                text=f"no outcome yet, {why}; trying until {deadline:g}s")) as client:
            return await client.request(request)


@cli.group()
def account() -> None:
    """Accounts."""


@account.command("create")
@click.argument("account_ids", nargs=-1, required=True)
@currency_option
@click.option("--allow-negative", is_flag=True,
              help="An issuer account: may go below zero (money enters the ledger from it).")
@click.option("--flag", "flags", multiple=True, type=click.Choice(api.ACCOUNT_FLAGS),
              help="A limit the balance keeps, exactly these (repeat it; see docs/01-api). "
                   "Without it: debits_must_not_exceed_credits unless --allow-negative.")
@json_option
@pass_app
def create(app: AppContext, account_ids: tuple[str, ...], currency: str, allow_negative: bool,
           flags: tuple[str, ...], as_json: bool) -> None:
    """Create accounts (creating one again with the same attributes is a no-op)."""
    specs = [api.AccountSpec(id=a, currency=currency, allow_negative=allow_negative,
                             flags=list(flags) if flags else None) for a in account_ids]
    _account_op(app, api.CreateAccounts(accounts=specs), as_json)


@account.command("close")
@click.argument("account_ids", nargs=-1, required=True)
@json_option
@pass_app
def close(app: AppContext, account_ids: tuple[str, ...], as_json: bool) -> None:
    """Close accounts: they take part in no transfer until reopened (operator)."""
    _account_op(app, api.CloseAccounts(accounts=list(account_ids)), as_json)


@account.command("reopen")
@click.argument("account_ids", nargs=-1, required=True)
@json_option
@pass_app
def reopen(app: AppContext, account_ids: tuple[str, ...], as_json: bool) -> None:
    """Reopen closed accounts (operator)."""
    _account_op(app, api.ReopenAccounts(accounts=list(account_ids)), as_json)


def _account_op(app: AppContext, request: api.Request, as_json: bool) -> None:
    response = run(_ask, app, request, as_json)
    if response.error is not None:
        raise Failed(response.error.message)
    results = response.results or []
    emit(as_json, results, "\n".join(f"{r.status}: account {r.id}"
                                      + (f" ({r.detail})" if r.detail else "") for r in results))
    _fail_unless_ok(results)


@cli.command()
@click.argument("debit")
@click.argument("credit")
@click.argument("amount", type=int)
@click.option("--id", "transfer_id", help="Transfer id (default: a new one). Sending the same "
              "id again is safe: it is applied once and returns the original outcome.")
@currency_option
@click.option("--balancing", "balancing", multiple=True, type=click.Choice(["debit", "credit"]),
              help="Move at most AMOUNT: as much as the debit (credit) account's limit allows.")
@click.option("--pending", is_flag=True, help="Reserve AMOUNT only, until `quorapay post` or "
              "`quorapay void` names this transfer's id (or --timeout passes).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.001),
              help="With --pending: expire after this many seconds of the log's time.")
@json_option
@pass_app
def pay(app: AppContext, debit: str, credit: str, amount: int, transfer_id: str | None,
        currency: str, balancing: tuple[str, ...], pending: bool, timeout_s: float | None,
        as_json: bool) -> None:
    """Move AMOUNT minor units (cents) from DEBIT to CREDIT (or reserve it: --pending)."""
    if timeout_s is not None and not pending:
        raise Failed("--timeout is for a pending transfer (add --pending)")
    flags = [f"balancing_{b}" for b in balancing] + ([api.PENDING] if pending else [])
    spec = api.TransferSpec(id=_new_id(transfer_id), debit=debit, credit=credit, amount=amount,
                            currency=currency, flags=flags,
                            timeout_ms=round(timeout_s * 1000) if timeout_s else None)
    _submit(app, [spec], as_json)


@cli.command()
@click.argument("pending_id")
@click.option("--amount", type=click.IntRange(min=1), help="Post this much of the reservation "
              "and release the rest (default: all of it).")
@click.option("--id", "transfer_id", help="This post's own id (default: a new one).")
@json_option
@pass_app
def post(app: AppContext, pending_id: str, amount: int | None, transfer_id: str | None,
         as_json: bool) -> None:
    """Post the pending transfer PENDING_ID: move what it reserved (or --amount of it)."""
    _submit(app, [api.TransferSpec(id=_new_id(transfer_id), pending_id=pending_id,
                                   amount=amount, flags=[api.POST_PENDING])], as_json)


@cli.command()
@click.argument("pending_id")
@click.option("--id", "transfer_id", help="This void's own id (default: a new one).")
@json_option
@pass_app
def void(app: AppContext, pending_id: str, transfer_id: str | None, as_json: bool) -> None:
    """Void the pending transfer PENDING_ID: release what it reserved."""
    _submit(app, [api.TransferSpec(id=_new_id(transfer_id), pending_id=pending_id,
                                   flags=[api.VOID_PENDING])], as_json)


def _new_id(transfer_id: str | None) -> str:
    if transfer_id == "":
        raise Failed("--id must not be empty (leave it out to get a new id)")
    return transfer_id or f"t-{uuid.uuid4().hex[:16]}"


@cli.command()
@click.argument("legs", nargs=-1, required=True, metavar="DEBIT:CREDIT:AMOUNT[:ID]...")
@currency_option
@json_option
@pass_app
def chain(app: AppContext, legs: tuple[str, ...], currency: str, as_json: bool) -> None:
    """Move money along linked transfers, all or nothing: if one fails, none moves money.
    Each leg without an ID gets a new one; sending the same ids again is safe."""
    if len(legs) < 2:
        raise Failed("a chain has at least two legs (for one transfer: quorapay pay)")
    base = f"t-{uuid.uuid4().hex[:12]}"
    specs = [_leg(text, f"{base}-{n}", currency, linked=n < len(legs))
             for n, text in enumerate(legs, 1)]
    _submit(app, specs, as_json)


def _leg(text: str, default_id: str, currency: str, *, linked: bool) -> api.TransferSpec:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not parts[2].isdigit() or "" in parts:
        raise Failed(f"leg {text!r}: expected DEBIT:CREDIT:AMOUNT or DEBIT:CREDIT:AMOUNT:ID "
                     "(AMOUNT in minor units, a whole number)")
    return api.TransferSpec(id=parts[3] if len(parts) == 4 else default_id, debit=parts[0],
                            credit=parts[1], amount=int(parts[2]), currency=currency,
                            linked=linked)


def _submit(app: AppContext, specs: list[api.TransferSpec], as_json: bool) -> None:
    response = run(_ask, app, api.SubmitTransfers(transfers=specs), as_json)
    if response.error is not None:
        raise Failed(response.error.message)
    results = response.results or []
    emit(as_json, results, "\n".join(_describe_transfer(r, response.index, spec)
                                      for r, spec in zip(results, specs, strict=True)))
    _fail_unless_ok(results)


def _describe_transfer(result: api.CommandResult, entry: int | None,
                       spec: api.TransferSpec) -> str:
    body = f"{spec.amount} {spec.currency} {spec.debit} -> {spec.credit}" if not spec.pending_id \
        else f"{spec.flags[0].split('_')[0]} of {spec.pending_id}"
    if result.status == "id_conflict":
        return (f"id_conflict: transfer {result.id} was already used at index {result.index} "
                f"for a different transfer; this one ({body}) was not applied")
    text = f"{result.status}: transfer {result.id}, {body}"
    if result.moved is not None and result.status == "ok":
        text += f", moved {result.moved}"
    if result.index is not None and entry is not None and result.index != entry:
        text += (f" (the original outcome, decided at index {result.index}: this id keeps "
                 "it; use a new id to try again)" if result.status != "ok" else
                 f" (already applied at index {result.index}; applied once)")
    elif result.index is not None:
        text += f" (index {result.index}{_at(result.timestamp, result.logical)})"
    return text + (f": {result.detail}" if result.detail else "")


def _at(timestamp: str | None, logical: int | None) -> str:
    """', at 2026-11-27T01:02:03.456Z +0' (the timestamp's wall-clock part and counter)."""
    return f", at {timestamp} +{logical or 0}" if timestamp else ""


@cli.command()
@click.argument("account_ids", nargs=-1, required=True)
@json_option
@pass_app
def balance(app: AppContext, account_ids: tuple[str, ...], as_json: bool) -> None:
    """Linearizable balances of accounts."""
    response = run(_ask, app, api.GetBalances(accounts=list(account_ids)), as_json)
    if response.error is not None:
        raise Failed(response.error.message)
    balances = response.balances or []
    emit(as_json, {"index": response.index, "balances": balances}, "\n".join(
        f"{b.account:20} {b.balance:>14} {b.currency}" + (" (closed)" if b.closed else "")
        + (f" (pending: -{b.debits_pending} +{b.credits_pending})"
           if b.debits_pending or b.credits_pending else "")
        for b in balances))


@cli.command()
@click.argument("transfer_ids", nargs=-1, required=True)
@json_option
@pass_app
def transfer(app: AppContext, transfer_ids: tuple[str, ...], as_json: bool) -> None:
    """Look transfers up by id (linearizable)."""
    response = run(_ask, app, api.GetTransfers(ids=list(transfer_ids)), as_json)
    found = {t.id: t for t in response.transfers or []}
    emit(as_json, {"index": response.index, "transfers": list(found.values())}, "\n".join(
        f"{t.id}: {t.status}, {t.amount} {t.currency} {t.debit} -> {t.credit} "
        f"(index {t.index}{_at(t.timestamp, t.logical)})"
        if (t := found.get(i)) else f"{i}: not found" for i in transfer_ids))
    if len(found) < len(transfer_ids):
        raise Failed("some transfers were not found")


def _fail_unless_ok(results: list[api.CommandResult]) -> None:
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise Failed(f"{len(failed)} of {len(results)} failed")
