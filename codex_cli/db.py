"""`codex db`: migrate, status, downgrade, check, url and stop."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import JsonOpt, YesOpt, confirm, container, print_json

app = typer.Typer(
    help="Database schema: migrations, status, drift check, connection URL.", no_args_is_help=True
)


def _target() -> tuple[str, bool]:
    from services.core.masking import mask_url

    c = container()
    return mask_url(c.migration_url), c.settings.embedded_database


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="Target revision (default: head).")] = "head",
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Upgrade the database schema to the latest (or a given) revision."""
    from services.adapters import migrations

    if sql:
        typer.echo(migrations.offline_sql("offline", to=to))
        return
    result = migrations.migrate(container().migration_engine, to=to)
    target, embedded = _target()
    if json_output:
        print_json({**result.__dict__, "database": target, "embedded": embedded})
        return
    if not result.applied:
        typer.echo(f"Already up to date at revision {result.after or 'base'}; nothing to do.")
        return
    for rev in result.applied:
        typer.echo(f"applied {rev}")
    typer.echo(f"Database {target} is now at revision {result.after}.")


@app.command()
def status(json_output: JsonOpt = False) -> None:
    """Show the current revision, the head and pending migrations of the target database."""
    from services.adapters import migrations

    st = migrations.get_status(container().migration_engine)
    target, embedded = _target()
    if json_output:
        print_json(
            {
                "current": st.current,
                "head": st.head,
                "pending": st.pending,
                "up_to_date": st.up_to_date,
                "database": target,
                "embedded": embedded,
            }
        )
        return
    typer.echo(f"database: {target}{' (embedded)' if embedded else ''}")
    typer.echo(f"current:  {st.current or 'none (empty database)'}")
    typer.echo(f"head:     {st.head}")
    if st.up_to_date:
        typer.echo("status:   up to date")
    else:
        typer.echo(f"status:   {len(st.pending)} pending")
        for rev in st.pending:
            typer.echo(f"  pending {rev}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go down to, or `base` for an empty schema.")],
    yes: YesOpt = False,
) -> None:
    """Downgrade the schema to REVISION (destructive: asks first)."""
    from services.adapters import migrations

    c = container()
    target, _ = _target()
    migrations.offline_sql("offline", to="head")  # fail fast on a broken script directory
    confirm(f"Downgrade {target} to {revision}? Data in dropped tables is lost.", yes)
    result = migrations.downgrade(c.migration_engine, revision)
    if not result.applied:
        typer.echo(f"Already at revision {result.after or 'base'}; nothing to do.")
        return
    for rev in result.applied:
        typer.echo(f"reverted {rev}")
    typer.echo(f"Database {target} is now at revision {result.after or 'base'}.")


@app.command()
def check(json_output: JsonOpt = False) -> None:
    """Compare the models with the live database; exit 4 when they drift."""
    from services.adapters import migrations

    diffs = migrations.check_drift(container().migration_engine)
    if json_output:
        print_json({"drift": diffs, "clean": not diffs})
    elif diffs:
        typer.echo(f"The database differs from the models in {len(diffs)} place(s):")
        for line in diffs:
            typer.echo(f"  - {line}")
    else:
        typer.echo("No drift: the database matches the models.")
    if diffs:
        raise typer.Exit(4)


@app.command()
def url() -> None:
    """Print the connection URL (for `psql "$(codex db url)"`); starts the embedded server if needed."""
    typer.echo(container().database_url.replace("postgresql+psycopg://", "postgresql://", 1))


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server (its data stays under CODEX_HOME)."""
    from services.adapters.db import embedded_data_dir, stop_embedded
    from services.settings import Settings

    settings = Settings.load()
    if not settings.embedded_database:
        typer.echo("DATABASE_URL is set: there is no embedded server to stop.", err=True)
        raise typer.Exit(2)
    if stop_embedded(settings.codex_home):
        typer.echo(f"Stopped the embedded PostgreSQL in {embedded_data_dir(settings.codex_home)}.")
    else:
        typer.echo("The embedded PostgreSQL is not running.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
