"""`codex content`: the catalog of an organization."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import (
    ByOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    YesOpt,
    confirm,
    container,
    print_json,
    print_table,
)

app = typer.Typer(
    help="Content catalog: create, list, show, update, publish, unpublish, delete.", no_args_is_help=True
)

IdArg = Annotated[str, typer.Argument(metavar="ID|SLUG", help="Content id, or its slug in --org.")]
TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="TAG", help="A tag (repeat; at most 10; update: replaces all tags)."),
]


def _show(view, json_output: bool, verb: str | None = None) -> None:
    if json_output:
        print_json(view)
        return
    if verb:
        typer.echo(f"{verb} {view.slug} ({view.id}): {view.status}, {view.price}.")
        return
    rows = [
        ["id", view.id],
        ["organization", view.organization],
        ["title", view.title],
        ["slug", view.slug],
        ["status", view.status],
        ["price", view.price],
        ["category", view.category or ""],
        ["tags", ", ".join(view.tags)],
        ["media item", view.media_item_id],
        ["published at", view.published_at or ""],
        ["description", view.description],
    ]
    print_table(["FIELD", "VALUE"], rows)


@app.command()
def create(
    org: OrgOpt,
    media: Annotated[str, typer.Option("--media", help="Media item id (of the same organization).")],
    title: Annotated[str, typer.Option("--title", help="3 to 255 characters.")],
    description: Annotated[str, typer.Option("--description", help="10 to 5000 characters.")],
    price_cents: Annotated[
        int, typer.Option("--price-cents", help="Price in cents, 0 for free, at most 99999999.")
    ],
    currency: Annotated[str, typer.Option("--currency", help="Three-letter currency code.")] = "usd",
    category: Annotated[str | None, typer.Option("--category", help="Category slug.")] = None,
    tag: TagOpt = None,
    slug: Annotated[str | None, typer.Option("--slug", help="Slug (default: from the title).")] = None,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create a draft content item for a media item."""
    from services.catalog.content import create_content

    view = create_content(
        container(),
        org,
        media,
        title,
        description,
        price_cents,
        currency=currency,
        category=category,
        tags=tag or [],
        slug=slug,
        by=by,
    )
    _show(view, json_output, "Created")


@app.command("list")
def list_(
    org: OrgOpt,
    status: Annotated[str | None, typer.Option("--status", help="draft, published or archived.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows per page (1-500).")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Next page, as printed by the last one.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List an organization's content, newest first."""
    from services.catalog.content import list_content

    page = list_content(container(), org, status=status, limit=limit, cursor=cursor)
    if json_output:
        print_json({"items": page.items, "next_cursor": page.next_cursor})
        return
    if not page.items:
        typer.echo("No content matches.")
        return
    print_table(
        ["ID", "SLUG", "TITLE", "STATUS", "PRICE", "CATEGORY"],
        [[v.id, v.slug, v.title, v.status, v.price, v.category] for v in page.items],
    )
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}", err=True)


@app.command()
def show(content_id: IdArg, org: OrgOpt, json_output: JsonOpt = False) -> None:
    """Show one content item."""
    from services.catalog.content import get_content

    _show(get_content(container(), org, content_id), json_output)


@app.command()
def update(
    content_id: IdArg,
    org: OrgOpt,
    title: Annotated[
        str | None, typer.Option("--title", help="3 to 255 characters (the slug stays).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="10 to 5000 characters.")] = None,
    price_cents: Annotated[
        int | None, typer.Option("--price-cents", help="Price in cents, 0 for free, at most 99999999.")
    ] = None,
    currency: Annotated[str | None, typer.Option("--currency", help="Three-letter currency code.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Category slug; '' removes it.")] = None,
    tag: TagOpt = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    slug: Annotated[str | None, typer.Option("--slug", help="A new slug (old links stop working).")] = None,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Change a content item's title, description, price, category, tags or slug."""
    from services.catalog.content import update_content

    if clear_tags and tag:
        raise typer.BadParameter("give --tag or --clear-tags, not both.", param_hint="--clear-tags")
    tags = [] if clear_tags else tag
    view = update_content(
        container(),
        org,
        content_id,
        title=title,
        description=description,
        price_cents=price_cents,
        currency=currency,
        category=category,
        tags=tags,
        slug=slug,
        by=by,
    )
    _show(view, json_output, "Updated")


@app.command()
def publish(content_id: IdArg, org: OrgOpt, by: ByOpt = None, json_output: JsonOpt = False) -> None:
    """Publish a content item (its media item must be ready)."""
    from services.catalog.content import publish_content

    _show(publish_content(container(), org, content_id, by=by), json_output, "Published")


@app.command()
def unpublish(content_id: IdArg, org: OrgOpt, by: ByOpt = None, json_output: JsonOpt = False) -> None:
    """Take a content item back to draft (buyers keep access)."""
    from services.catalog.content import unpublish_content

    _show(unpublish_content(container(), org, content_id, by=by), json_output, "Unpublished")


@app.command()
def delete(
    content_id: IdArg,
    org: OrgOpt,
    by: ByOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Soft-delete a content item (refused while customers own it)."""
    from services.catalog.content import delete_content

    c = container()
    plan = delete_content(c, org, content_id, by=by, dry_run=True)
    if dry_run:
        if json_output:
            print_json({"dry_run": True, "would_delete": plan})
        else:
            typer.echo(f"Would delete {plan.slug} ({plan.id}); nothing changed.")
        return
    confirm(f"Delete content {plan.title!r} ({plan.slug})?", yes)
    _show(delete_content(c, org, content_id, by=by), json_output, "Deleted")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="content")
