"""`codex checkout`: start a purchase for a customer through Stripe Checkout (or grant free content)."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import JsonOpt, MaybeOrgOpt, container, print_json

app = typer.Typer(
    help="Stripe Checkout: create a payment link for a customer and a piece of content.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    customer: Annotated[
        str, typer.Option("--customer", metavar="EMAIL|ID", help="The customer, by email or user id.")
    ],
    content: Annotated[
        str,
        typer.Option(
            "--content", metavar="ID|SLUG", help="Published content, by id or slug (a slug needs --org)."
        ),
    ],
    org: MaybeOrgOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create a pending purchase and a Checkout Session; print its URL (or grant free content)."""
    from services.payments.checkout import create_checkout

    result = create_checkout(container(), customer, content, org)
    if json_output:
        print_json(result)
        return
    if result.free:
        typer.echo(
            f"Free access granted: {result.content_title} for {result.customer} "
            f"(purchase {result.purchase_id})."
        )
        return
    # The URL alone on stdout, so `url=$(codex checkout create ...)` works; the summary on stderr.
    typer.echo(
        f"Checkout for {result.content_title} ({result.amount}) for {result.customer}: "
        f"purchase {result.purchase_id} pending, session {result.session_id}.",
        err=True,
    )
    typer.echo(result.checkout_url)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="checkout")
