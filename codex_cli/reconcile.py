"""`codex reconcile`: purchases against Stripe, from cron; quiet when all is well."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import (
    DryRunOpt,
    JsonOpt,
    container,
    err_console,
    is_tty,
    print_json,
    print_table,
    report_locked_out,
)


def reconcile(
    since: Annotated[str, typer.Option("--since", help="How far back to look at Stripe, e.g. 7d.")] = "7d",
    min_age: Annotated[
        str, typer.Option("--min-age", help="Skip purchases younger than this (a customer may be paying).")
    ] = "15m",
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=1_000_000, help="At most N pending purchases.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print details even when clean.")] = False,
) -> None:
    """Find and fix purchases that drifted from Stripe; exit 4 when something needs a person."""
    from services.core.durations import parse_duration
    from services.payments.reconcile import reconcile_purchases

    since_td, min_age_td = parse_duration(since), parse_duration(min_age)
    progress = (lambda msg: err_console().print(f"[dim]{msg}[/dim]")) if verbose and is_tty() else None
    report = reconcile_purchases(
        container(), since=since_td, min_age=min_age_td, dry_run=dry_run, limit=limit, on_progress=progress
    )
    if json_output:
        print_json(
            {
                "dry_run": report.dry_run,
                "locked_out": report.locked_out,
                "lock_holder": report.lock_holder,
                "lock_stale": report.lock_stale,
                "window_start": report.window_start,
                "checked_purchases": report.checked_purchases,
                "listed_sessions": report.listed_sessions,
                "listed_refunds": report.listed_refunds,
                "retrieved_sessions": report.retrieved_sessions,
                "fixed": report.fixed_counts,
                "fixes": report.fixed,
                "unresolved": report.unresolved,
                "emails_failed": report.emails_failed,
            }
        )
    if report.locked_out:
        report_locked_out("reconcile", report.lock_holder, report.lock_stale, json_output)
    elif not json_output:
        _render(report, verbose)
    if report.needs_attention:
        raise typer.Exit(4)


def _render(report, verbose: bool) -> None:
    if report.clean and not verbose:
        return  # cron mails only what matters
    verb = "would fix" if report.dry_run else "fixed"
    rows = [
        ["checked pending purchases", report.checked_purchases],
        ["listed sessions / refunds", f"{report.listed_sessions} / {report.listed_refunds}"],
        ["retrieved sessions", report.retrieved_sessions],
    ]
    rows += [[f"{verb}: {kind}", count] for kind, count in sorted(report.fixed_counts.items())]
    rows.append(["needs a person", len(report.unresolved)])
    if report.emails_failed:
        rows.append(["receipt emails failed", report.emails_failed])
    print_table(["", "count"], rows, title="codex reconcile" + (" (dry run)" if report.dry_run else ""))
    if verbose:
        for f in report.fixed:
            typer.echo(f"{verb} {f.kind}: purchase {f.purchase_id} session {f.session_id or '-'} {f.detail}")
    for f in report.unresolved:
        typer.echo(
            f"NEEDS A PERSON {f.kind}: purchase {f.purchase_id} session {f.session_id or '-'}: {f.detail}"
        )


def register(root: typer.Typer) -> None:
    root.command("reconcile")(reconcile)
