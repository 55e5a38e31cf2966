"""`codex doctor`: one line per check of the database, object store, Stripe, email and settings."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import JsonOpt, container, print_json


def doctor(
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Also fail when a part is local or not configured (for production)."),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check every part (database, buckets, Stripe, email, webhook secret, APP_URL); exit 1 if one fails."""
    from services.maintenance.doctor import run_doctor

    report = run_doctor(container(), strict=strict)
    if json_output:
        print_json(
            {
                "ok": report.ok,
                "strict": report.strict,
                "checks": report.checks,
                "failures": [c.name for c in report.failures],
                "embedded": report.embedded,
            }
        )
    else:
        for check in report.checks:
            typer.echo(f"{check.status:<15}{check.name:<16}{check.detail}")
        if report.ok:
            typer.echo("All checks passed." if not report.strict else "All checks passed (strict).")
        else:
            names = ", ".join(c.name for c in report.failures)
            typer.echo(f"{len(report.failures)} check(s) failed: {names}.", err=True)
    if not report.ok:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("doctor")(doctor)
