"""`codex storage setup`: create the buckets and set their CORS and lifecycle rules (idempotent)."""

from __future__ import annotations

import typer

from codex_cli.common import DryRunOpt, JsonOpt, container, print_json

app = typer.Typer(
    help="Object storage: create the buckets and set their CORS and lifecycle rules.", no_args_is_help=True
)

_VERBS = {
    "created": ("create", "created"),
    "added": ("add", "added"),
    "updated": ("replace", "replaced"),
}


@app.command()
def setup(dry_run: DryRunOpt = False, json_output: JsonOpt = False) -> None:
    """Create the media and assets buckets when missing; set on each one CORS rule (PUT/GET/HEAD from
    APP_URL's origin) and one lifecycle rule (abort incomplete multipart uploads after 7 days)."""
    from services.maintenance.storage_setup import ABORT_AFTER_DAYS, setup_storage

    result = setup_storage(container(), dry_run=dry_run)
    if json_output:
        print_json(result)
        return
    tense = 0 if dry_run else 1
    for b in result.buckets:
        if b.local:
            what = (
                f"would create {b.where}"
                if dry_run and b.changed
                else f"created {b.where}"
                if b.changed
                else f"{b.where} exists"
            )
            typer.echo(
                f"{b.role} bucket {b.bucket}: {what} (a local directory has no CORS or lifecycle rules)."
            )
            continue
        done = []
        if b.bucket_action != "unchanged":
            done.append(f"{_VERBS[b.bucket_action][tense]} the bucket")
        if b.cors_action != "unchanged":
            done.append(f"{_VERBS[b.cors_action][tense]} the CORS rule for {result.origin}")
        if b.lifecycle_action != "unchanged":
            done.append(
                f"{_VERBS[b.lifecycle_action][tense]} the lifecycle rule "
                f"(abort incomplete uploads after {ABORT_AFTER_DAYS} days)"
            )
        kept = b.other_cors_rules + b.other_lifecycle_rules
        tail = f"; kept {kept} other rule(s)" if kept else ""
        if done:
            prefix = "would " if dry_run else ""
            typer.echo(f"{b.role} bucket {b.bucket}: {prefix}{', '.join(done)}{tail}.")
        else:
            typer.echo(f"{b.role} bucket {b.bucket}: already set up, nothing changed{tail}.")
    if dry_run:
        typer.echo("Dry run: nothing was changed.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="storage")
