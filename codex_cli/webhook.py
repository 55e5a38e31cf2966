"""`codex webhook`: the embedded Stripe webhook listener and the stored-events tools around it."""

from __future__ import annotations

from typing import Annotated

import typer

from codex_cli.common import (
    DryRunOpt,
    JsonOpt,
    YesOpt,
    confirm,
    container,
    print_json,
    print_json_line,
    print_table,
)

app = typer.Typer(
    help="Stripe webhooks: run the listener, inspect, replay, backfill and prune stored events.",
    no_args_is_help=True,
)


@app.command()
def listen(
    host: Annotated[str, typer.Option("--host", help="Address to bind (use a reverse proxy for TLS).")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", help="Port to bind; 0 picks a free one.", min=0, max=65535)
    ] = (8787),
    workers: Annotated[
        int, typer.Option("--workers", help="Processes accepting requests (use the number of cores).", min=1)
    ] = 1,
    max_concurrent: Annotated[
        int,
        typer.Option("--max-concurrent", help="Requests handled at once per worker; more get 503.", min=1),
    ] = 64,
    json_output: JsonOpt = False,
) -> None:
    """Serve POST /webhooks/stripe/payment and GET /health until SIGINT/SIGTERM."""
    import logging
    import sys

    from services.adapters.http_listener import WEBHOOK_PATH, BackgroundTask, run_listener

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    webhook_log = logging.getLogger("codex.webhooks")
    webhook_log.setLevel(logging.INFO)
    webhook_log.addHandler(handler)
    webhook_log.propagate = False

    def ready(server) -> None:
        if json_output:
            print_json_line({"listening": server.url, "webhook_url": server.url + WEBHOOK_PATH})
        else:
            typer.echo(f"Listening on {server.url}{WEBHOOK_PATH} (health: {server.url}/health).")
            typer.echo("Stop with Ctrl-C or SIGTERM; requests in flight are finished first.")

    # Work that lives as long as the listener: started once it accepts, stopped after it drained
    # (one per listener, whatever --workers is); see http_listener.BackgroundTask.
    from services.email.outbox import OutboxDrainer

    c = container()
    background: list[BackgroundTask] = [OutboxDrainer(c)]  # sends the receipts queued with purchases
    try:
        drained = run_listener(
            c,
            host=host,
            port=port,
            on_ready=ready,
            workers=workers,
            background=background,
            max_concurrent_requests=max_concurrent,
        )
    finally:
        webhook_log.removeHandler(handler)
        webhook_log.propagate = True
    if json_output:
        print_json_line({"stopped": True, "drained": drained})
    if not drained:
        typer.echo("Stopped, but not cleanly: a worker failed or requests were still running.", err=True)
        raise typer.Exit(1)
    if not json_output:
        typer.echo("Stopped.")


@app.command()
def events(
    status: Annotated[
        str | None,
        typer.Option("--status", help="received, processed, ignored, failed or failed_permanently."),
    ] = None,
    type: Annotated[
        str | None, typer.Option("--type", help="Stripe event type, e.g. checkout.session.completed.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events received within, e.g. 24h.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")
    ] = 50,
    json_output: JsonOpt = False,
) -> None:
    """List stored webhook events, newest first."""
    from services.core.durations import parse_duration
    from services.payments.webhooks import list_events

    rows = list_events(
        container(), status=status, type=type, since=parse_duration(since) if since else None, limit=limit
    )
    if json_output:
        print_json(rows)
        return
    if not rows:
        typer.echo("No stored events match.")
        return
    print_table(
        ["id", "type", "status", "attempts", "received", "processed", "error"],
        [
            [
                r.id,
                r.type,
                r.status,
                r.attempts,
                r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.processed_at.strftime("%Y-%m-%d %H:%M:%S") if r.processed_at else "",
                (r.error or "")[:80],
            ]
            for r in rows
        ],
    )


@app.command()
def replay(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID", help="Stored Stripe event id (evt_...).")],
    json_output: JsonOpt = False,
) -> None:
    """Re-apply a stored event through the same handler (safe: effects are idempotent)."""
    from services.payments.webhooks import replay_event

    outcome = replay_event(container(), event_id)
    if json_output:
        print_json(outcome)
        return
    typer.echo(f"{outcome.event_id} ({outcome.type}): {outcome.outcome}, {outcome.action}.")
    if outcome.email == "failed":
        typer.echo(
            "The receipt email failed; it stays queued for `codex email drain` (see the log above).", err=True
        )


@app.command()
def backfill(
    since: Annotated[str, typer.Option("--since", help="How far back to ask Stripe (at most 30d).")] = "2h",
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Fetch events from Stripe's API and apply those never received or failed; exit 4 if some fail."""
    from services.core.durations import parse_duration
    from services.payments.webhooks import backfill_events

    report = backfill_events(container(), parse_duration(since), dry_run=dry_run)
    if json_output:
        print_json({**report.__dict__, "failed": len(report.failed)})
    else:
        typer.echo(
            f"Stripe listed {report.listed} event(s) since {report.since:%Y-%m-%d %H:%M} UTC; "
            f"{report.already_done} already processed."
        )
        for item in report.items:
            was = item.stored_status or "never received"
            detail = f": {item.detail}" if item.detail else ""
            typer.echo(f"  {item.result:<11} {item.event_id} {item.type} ({was}){detail}")
        if not report.items:
            typer.echo("Nothing to apply.")
        elif dry_run:
            typer.echo(f"Dry run: {len(report.items)} event(s) would be applied.")
    if report.failed:
        typer.echo(
            f"{len(report.failed)} event(s) still fail; see `codex webhook events --status failed`.", err=True
        )
        raise typer.Exit(4)


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete processed/ignored events older than this (>= 30d).")
    ] = "90d",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Delete old processed and ignored events; failed ones are kept for a person."""
    from dataclasses import replace

    from services.core.durations import parse_duration
    from services.payments.webhooks import prune_events

    age = parse_duration(older_than)
    c = container()
    if not dry_run:
        preview = prune_events(c, age, dry_run=True)
        if preview.deleted == 0:
            report = replace(preview, dry_run=False)
        else:
            confirm(
                f"Delete {preview.deleted} stored event(s) received before {preview.older_than:%Y-%m-%d}?",
                yes,
            )
            report = prune_events(c, age)
    else:
        report = prune_events(c, age, dry_run=True)
    if json_output:
        print_json(report)
        return
    verb = "Would delete" if report.dry_run else "Deleted"
    typer.echo(f"{verb} {report.deleted} event(s) received before {report.older_than:%Y-%m-%d %H:%M} UTC.")
    if report.kept_unfinished:
        typer.echo(f"Kept {report.kept_unfinished} older failed/unfinished event(s) for a person to look at.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="webhook")
