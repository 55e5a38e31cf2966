"""`codex refund PURCHASE_ID`: a 30-day-window refund through Stripe, with audit and a confirmation email."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from codex_cli.common import ByOpt, DryRunOpt, JsonOpt, YesOpt, confirm, container, is_tty, print_json

if TYPE_CHECKING:
    from services.payments.refunds import RefundResult


def _days_ago(days: int) -> str:
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"


def _describe(plan: RefundResult) -> list[str]:
    how = (
        "free purchase: access is revoked, Stripe is not called"
        if plan.free
        else f"Stripe refund on payment intent {plan.payment_intent}"
    )
    lines = [
        f"  purchase   {plan.purchase_id}",
        f"  customer   {plan.customer}",
        f"  content    {plan.content_title}",
        f"  amount     {plan.amount} ({how})",
        f"  purchased  {plan.purchased_at:%Y-%m-%d %H:%M} UTC ({_days_ago(plan.days_since_purchase)})",
    ]
    if plan.outside_window:
        lines.append("  window     outside the 30-day refund window (--override-window given)")
    return lines


def _ask(yes: bool):
    def ask(plan: RefundResult) -> None:
        if is_tty():
            typer.echo("About to refund:")
            for line in _describe(plan):
                typer.echo(line)
        confirm(f"Refund {plan.amount} to {plan.customer} for {plan.content_title!r}?", yes)

    return ask


def refund(
    purchase_id: Annotated[
        str,
        typer.Argument(metavar="PURCHASE_ID", help="The purchase to refund (its UUID).", show_default=False),
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            metavar="TEXT",
            help="Why (at least 10 characters; kept in the database and audit log).",
        ),
    ],
    by: ByOpt = None,
    override_window: Annotated[
        bool,
        typer.Option(
            "--override-window", help="Refund even after the 30-day window (recorded in the audit log)."
        ),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Refund a completed purchase through Stripe (30-day window), end access, email the customer."""
    from services.payments.refunds import RefundRequest, refund_purchase

    request = RefundRequest(
        purchase_id=purchase_id,
        reason=reason,
        operator_email=by,
        override_window=override_window,
        dry_run=dry_run,
    )
    result = refund_purchase(container(), request, confirm=None if yes or dry_run else _ask(yes))
    if json_output:
        print_json(result)
        return
    if result.dry_run:
        typer.echo("Dry run: would refund")
        for line in _describe(result):
            typer.echo(line)
        typer.echo("Nothing was changed.")
        return
    how = "free purchase, no Stripe call" if result.free else f"Stripe refund {result.refund_id}"
    typer.echo(f"Refunded {result.amount} to {result.customer} for {result.content_title!r} ({how}).")
    typer.echo("Access has ended; the customer can buy it again.")
    email = result.email
    if email is not None and email.sent:
        typer.echo(f"Refund confirmation emailed to {result.customer}.")
    elif email is not None:
        typer.echo(
            f"Warning: the refund confirmation email to {result.customer} failed: {email.error} "
            "The refund itself is done.",
            err=True,
        )


def register(root: typer.Typer) -> None:
    root.command("refund")(refund)
