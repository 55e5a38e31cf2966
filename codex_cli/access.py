"""`codex access` (check, grant, library), `codex purchases` (list, show) and `codex users` (list, show)."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import ByOpt, JsonOpt, MaybeOrgOpt, container, print_json, print_table

access_app = typer.Typer(
    help="Who may watch what: check access (exit 0/1 like grep), grant free access, show a library.",
    no_args_is_help=True,
)
purchases_app = typer.Typer(
    help="Purchases, newest first: list with filters, show one.", no_args_is_help=True
)
users_app = typer.Typer(
    help="Users: list, show one with memberships and purchases, create a customer, change a role.",
    no_args_is_help=True,
)

UserOpt = Annotated[str, typer.Option("--user", metavar="EMAIL|ID", help="The customer, by email or id.")]
ContentOpt = Annotated[
    str, typer.Option("--content", metavar="ID|SLUG", help="The content, by id or slug (a slug needs --org).")
]
LimitOpt = Annotated[int, typer.Option("--limit", help="Rows per page (1-500).")]
CursorOpt = Annotated[
    str | None, typer.Option("--cursor", help="Continue after the previous page (its next_cursor value).")
]


def _date(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def _more(next_cursor: str | None) -> None:
    if next_cursor:
        typer.echo(f"More rows: rerun with --cursor {next_cursor}", err=True)


# ------------------------------------------------------------------------------------------ access


@access_app.command("check")
def check(
    user: UserOpt,
    content: ContentOpt,
    org: MaybeOrgOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Exit 0 when the user has access to the content (a completed, unrefunded purchase), 1 when not."""
    from services.access.entitlements import check_access_for

    result = check_access_for(container(), user, content, org)
    if json_output:
        print_json(result)
    elif not quiet:
        if result.has_access:
            typer.echo(
                f'yes: {result.user} has access to "{result.title}" ({result.content_id}): {result.reason}'
            )
        else:
            typer.echo(
                f'no: {result.user} has no access to "{result.title}" ({result.content_id}): {result.reason}'
            )
    if not result.has_access:
        raise typer.Exit(1)


@access_app.command("url")
def url(
    user: UserOpt,
    content: Annotated[str, typer.Option("--content", help="Content id or slug.")],
    org: Annotated[
        str | None, typer.Option("--org", help="Organization slug or id (when the slug is not unique).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Print a one-hour streaming URL (HLS master playlist, else the original) if the user has access;
    exit 1 and print no URL when not."""
    from services.core.errors import PermissionDenied
    from services.media.streaming import streaming_url_for

    try:
        result = streaming_url_for(container(), user, content, org)
    except PermissionDenied as exc:
        typer.echo(f"no: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_output:
        print_json(result)
    else:
        typer.echo(result.url)


@access_app.command("grant")
def grant(
    user: UserOpt,
    content: ContentOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
    org: MaybeOrgOpt = None,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Give a user free access: a zero-price completed purchase, recorded in the audit log."""
    from services.access.entitlements import grant_access

    result = grant_access(container(), user, content, reason, by, org)
    if json_output:
        print_json(result)
        return
    typer.echo(
        f'Granted {result.user} access to "{result.title}" ({result.content_id}) '
        f"as complimentary purchase {result.purchase_id}."
    )


@access_app.command("library")
def library(user: UserOpt, json_output: JsonOpt = False) -> None:
    """The content a user has access to, newest purchase first (refunded purchases left out)."""
    from services.access.entitlements import library_for
    from services.core.money import format_money

    result = library_for(container(), user)
    if json_output:
        print_json(result)
        return
    if not result.items:
        typer.echo(f"{result.user} has no content in their library.")
        return

    def progress(item) -> str:
        if item.completed:
            return "finished"
        return f"{item.position_seconds}s" if item.position_seconds else ""

    print_table(
        ["purchased", "title", "content id", "paid", "category", "progress"],
        [
            [
                _date(i.purchased_at),
                i.title,
                i.content_id,
                format_money(i.price_paid_cents, i.currency),
                i.category_slug,
                progress(i),
            ]
            for i in result.items
        ],
        title=f"Library of {result.user}",
    )


# --------------------------------------------------------------------------------------- purchases


@purchases_app.command("list")
def purchases_list(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, completed (not refunded), failed or refunded.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", metavar="EMAIL|ID", help="Only this customer (email or id).")
    ] = None,
    content: Annotated[
        str | None,
        typer.Option("--content", metavar="ID|SLUG", help="Only this content (id, or slug with --org)."),
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", metavar="ORG", help="Only this organization (slug or id).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only created within this long, e.g. 7d.")
    ] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List purchases, newest first (customer emails masked), one page at a time."""
    from services.payments.purchase_views import list_purchases

    page = list_purchases(container(), status, customer, content, org, since, limit, cursor)
    if json_output:
        print_json(page)
        return
    if not page.items:
        typer.echo("No purchases match.")
        return
    print_table(
        ["created", "id", "status", "customer", "title", "org", "paid"],
        [
            [_date(p.created_at), p.id, p.status, p.customer, p.title, p.organization, p.price]
            for p in page.items
        ],
    )
    _more(page.next_cursor)


@purchases_app.command("show")
def purchases_show(
    purchase_id: Annotated[str, typer.Argument(metavar="PURCHASE_ID", help="Purchase id.")],
    json_output: JsonOpt = False,
) -> None:
    """Show one purchase: customer (masked), content, price, Stripe ids, refund, current access."""
    from services.payments.purchase_views import show_purchase

    p = show_purchase(container(), purchase_id)
    if json_output:
        print_json(p)
        return
    lines = [
        ("purchase", str(p.id)),
        ("status", p.status + (" (complimentary)" if p.complimentary else "")),
        ("access", "yes" if p.has_access else "no"),
        ("customer", f"{p.customer} ({p.customer_id})"),
        ("content", f'"{p.title}" ({p.content_id})'),
        ("organization", p.organization),
        ("paid", p.price),
        ("created", _date(p.created_at)),
        ("purchased", _date(p.purchased_at)),
        ("checkout", p.stripe_checkout_session_id or ""),
        ("payment", p.stripe_payment_intent_id or ""),
    ]
    if p.refunded_at is not None:
        lines += [
            ("refunded", _date(p.refunded_at)),
            ("refund reason", p.refund_reason or ""),
            ("refund id", p.stripe_refund_id or ""),
            ("refunded by", p.refunded_by or ""),
        ]
    for label, value in lines:
        typer.echo(f"{label + ':':<14} {value}")


# ------------------------------------------------------------------------------------------- users


@users_app.command("list")
def users_list(
    role: Annotated[str | None, typer.Option("--role", help="customer or platform_owner.")] = None,
    search: Annotated[str | None, typer.Option("--search", help="Part of the name or email.")] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List users, newest first (customer emails masked), one page at a time."""
    from services.access.users import list_users

    page = list_users(container(), role, search, limit, cursor)
    if json_output:
        print_json(page)
        return
    if not page.items:
        typer.echo("No users match.")
        return
    print_table(
        ["created", "id", "email", "name", "role", "verified", "purchases"],
        [
            [
                _date(u.created_at),
                u.id,
                u.email,
                u.name,
                u.role,
                "yes" if u.email_verified else "no",
                u.purchases,
            ]
            for u in page.items
        ],
    )
    _more(page.next_cursor)


@users_app.command("show")
def users_show(
    ref: Annotated[str, typer.Argument(metavar="EMAIL|ID", help="The user's email or id.")],
    json_output: JsonOpt = False,
) -> None:
    """Show one user: role, verification, organization memberships and purchase counts."""
    from services.access.users import show_user

    u = show_user(container(), ref)
    if json_output:
        print_json(u)
        return
    typer.echo(f"{'user:':<14} {u.email} ({u.id})")
    typer.echo(f"{'name:':<14} {u.name}")
    typer.echo(f"{'role:':<14} {u.role}")
    typer.echo(f"{'verified:':<14} {'yes' if u.email_verified else 'no'}")
    typer.echo(f"{'created:':<14} {_date(u.created_at)}")
    orgs = ", ".join(f"{m.organization} ({m.role})" for m in u.memberships) or "none"
    typer.echo(f"{'memberships:':<14} {orgs}")
    counts = ", ".join(f"{n} {state}" for state, n in u.purchases.items() if n) or "none"
    typer.echo(f"{'purchases:':<14} {counts}")
    if u.spent:
        typer.echo(f"{'spent:':<14} {', '.join(u.spent)}")


RoleOpt = Annotated[str, typer.Option("--role", metavar="ROLE", help="customer or platform_owner.")]


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option("--email", metavar="EMAIL", help="The new user's email address.")],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Display name.")],
    role: RoleOpt = "customer",
    verified: Annotated[
        bool, typer.Option("--verified", help="Mark the email address as already verified.")
    ] = False,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create a user (a customer unless --role says otherwise), recorded in the audit log."""
    from services.access.accounts import create_user

    result = create_user(container(), email, name, role, verified, by)
    if json_output:
        print_json(result)
        return
    state = "verified" if result.email_verified else "not verified"
    typer.echo(f"Created {result.role} {result.email} ({result.id}), email {state}.")


@users_app.command("set-role")
def users_set_role(
    ref: Annotated[str, typer.Argument(metavar="EMAIL|ID", help="The user's email or id.")],
    role: Annotated[
        str, typer.Argument(metavar="ROLE", help="customer or platform_owner.", show_default=False)
    ],
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Change a user's role (customer or platform_owner), recorded in the audit log."""
    from services.access.accounts import set_role

    result = set_role(container(), ref, role, by)
    if json_output:
        print_json(result)
        return
    if not result.changed:
        typer.echo(f"{result.email} is already a {result.role}; nothing changed.")
        return
    typer.echo(f"{result.email} is now a {result.role} (was {result.previous_role}).")


def register(root: typer.Typer) -> None:
    root.add_typer(access_app, name="access")
    root.add_typer(purchases_app, name="purchases")
    root.add_typer(users_app, name="users")
