"""`codex seed`: the platform owner with an organization, and the initial categories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codex_cli.common import ByOpt, DryRunOpt, JsonOpt, container, print_json, print_table

app = typer.Typer(
    help="Seed the platform: owner and organization, initial categories (idempotent).", no_args_is_help=True
)


@app.command()
def owner(
    email: Annotated[str, typer.Option("--email", metavar="EMAIL", help="The owner's email address.")],
    name: Annotated[str, typer.Option("--name", help="The owner's display name.")],
    org_name: Annotated[
        str | None, typer.Option("--org-name", help="Organization name (default Codex).")
    ] = None,
    org_slug: Annotated[
        str | None, typer.Option("--org-slug", help="Organization slug (default from the name).")
    ] = None,
    send_invite: Annotated[
        bool, typer.Option("--send-invite", help="Email a password-set link (valid 1 hour) under APP_URL.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Create or promote the platform owner, with an organization and owner membership."""
    from services.catalog.seeding import seed_owner

    result = seed_owner(
        container(), email=email, name=name, org_name=org_name, org_slug=org_slug, send_invite=send_invite
    )
    if json_output:
        print_json({**result.__dict__, "unchanged": result.unchanged})
    else:
        if result.unchanged:
            typer.echo(f"Nothing to change: {email} already owns organization {result.organization_slug}.")
        for change in result.changes:
            typer.echo(change)
        if result.changes:
            typer.echo(
                f"Platform owner {email} owns organization {result.organization_slug} "
                f"({result.organization_id})."
            )
        if result.invite_sent:
            typer.echo(f"Invite sent to {email} (link valid for 1 hour).")
    if result.invite_sent is False:
        typer.echo(f"Warning: the invite email failed: {result.invite_error}", err=True)
        raise typer.Exit(1)


@app.command()
def categories(
    file: Annotated[
        Path | None, typer.Option("--file", help="YAML or JSON list of name/slug/description/sort_order.")
    ] = None,
    by: ByOpt = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Upsert categories by slug (built-in defaults without --file); reports created/updated/unchanged."""
    from services.catalog.seeding import load_category_file, seed_categories

    items = load_category_file(file) if file is not None else None
    c = container()
    result = seed_categories(
        c,
        items,
        by=c.settings.operator_email(by),
        dry_run=dry_run,
        source=str(file) if file else None,
    )
    if json_output:
        print_json(result)
        return
    verb = "would be " if dry_run else ""
    rows = [[slug, f"{verb}created"] for slug in result.created]
    rows += [[slug, f"{verb}updated"] for slug in result.updated]
    rows += [[slug, "unchanged"] for slug in result.unchanged]
    print_table(["SLUG", "RESULT"], rows)
    typer.echo(
        f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged"
        f"{' (dry run: nothing written)' if dry_run else ''}."
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="seed")
