"""`latentmas ledger balance|statement|deposit`: talk to the ledger service through the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from latentmas_mesh.cli.app import app

if TYPE_CHECKING:
    from latentmas_mesh.errors import ProtocolError
    from latentmas_mesh.settlement.ledger_client import LedgerClient

ledger_app = typer.Typer(
    help="Balances, statements and funding on the latentmas.ledger service.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")

BrokerOption = Annotated[
    str | None, typer.Option(help="Broker endpoint (default: LATENTMAS_BROKER_URL).")
]
AccountOption = Annotated[
    str | None,
    typer.Option(help="Account, e.g. validator:<id> or platform (default: your agent account)."),
]


def _client(broker_url: str | None) -> LedgerClient:
    """A client whose identity is this host's CURVE key (LATENTMAS_CURVE_*_FILE settings)."""
    from latentmas_mesh.settlement.ledger_client import LedgerClient
    from latentmas_mesh.transport import Transport, TransportSettings

    overrides = {"broker_url": broker_url} if broker_url else {}
    return LedgerClient(Transport(TransportSettings.model_validate(overrides)))


def _fail(error: ProtocolError) -> NoReturn:
    typer.echo(f"{error.code.value}: {error.message} ({error.resolution})", err=True)
    raise typer.Exit(code=1)


@ledger_app.command()
def balance(account: AccountOption = None, broker_url: BrokerOption = None) -> None:
    """Print an account's balance in minor units."""
    from latentmas_mesh.errors import ProtocolError

    try:
        reply = _client(broker_url).balance(account)
    except ProtocolError as error:
        _fail(error)
    typer.echo(f"{reply.account}\t{reply.balance_units} {reply.currency}")


@ledger_app.command()
def statement(
    account: AccountOption = None,
    after: Annotated[int, typer.Option(min=0, help="Entries after this entry id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1_000, help="Entries per page.")] = 50,
    broker_url: BrokerOption = None,
) -> None:
    """Print one page of an account's journal, oldest first, and the cursor of the next page."""
    from latentmas_mesh.errors import ProtocolError

    try:
        page = _client(broker_url).statement(account, after_entry_id=after, limit=limit)
    except ProtocolError as error:
        _fail(error)
    typer.echo(f"{'entry':>8}  {'amount':>14}  {'balance':>14}  event")
    for entry in page.entries:
        typer.echo(
            f"{entry.entry_id:>8}  {entry.amount_units:>14}  {entry.balance_after_units:>14}"
            f"  {entry.event_id}"
        )
    if page.next_after is not None:
        typer.echo(f"more: --after {page.next_after}")


@ledger_app.command()
def deposit(
    agent: Annotated[str, typer.Argument(help="Agent identity (its CURVE public key).")],
    amount_units: Annotated[int, typer.Argument(min=1, help="Minor units to fund.")],
    event_id: Annotated[
        str | None, typer.Option(help="Idempotency id; re-run with the same id to retry safely.")
    ] = None,
    broker_url: BrokerOption = None,
) -> None:
    """Fund an agent's account from outside (operators only)."""
    from latentmas_mesh.errors import ProtocolError
    from latentmas_mesh.settlement.ledger_client import new_event_id

    chosen = event_id or new_event_id()
    try:
        result = _client(broker_url).deposit(agent, amount_units, event_id=chosen)
    except ProtocolError as error:
        _fail(error)
    replay = " (already applied)" if result.replayed else ""
    typer.echo(f"deposited {amount_units} to agent:{agent}, event {chosen}{replay}")
