"""`codex cleanup`: orphaned R2 objects, stale uploads, abandoned multipart uploads, expired sessions."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from codex_cli.common import (
    DryRunOpt,
    JsonOpt,
    YesOpt,
    container,
    is_tty,
    print_json,
    report_locked_out,
    require_confirmable,
)
from services.core.units import format_bytes

if TYPE_CHECKING:
    from services.maintenance.orphans import Candidate, CleanupPlan, CleanupProgress, OrphanCleanupResult

app = typer.Typer(
    help="Remove what nobody uses: orphaned objects, stale uploads, expired sessions (cron-safe).",
    no_args_is_help=True,
)

OlderThanOpt = Annotated[
    str,
    typer.Option("--older-than", help="Only touch objects and uploads older than this (30s, 15m, 24h, 7d)."),
]


class _Display:
    """A spinner with running counts on a terminal; silent otherwise. Paused while a question is asked."""

    def __init__(self, enabled: bool, err: bool = False) -> None:
        self.err = err  # with --json, questions and the plan go to stderr so stdout stays one document
        self.progress: Any = None
        if enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
            )
            self.task = self.progress.add_task("listing the bucket", total=None)

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, event: CleanupProgress) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                description=f"{event.phase}: {event.keys_listed:,} keys listed, "
                f"{event.orphans_found:,} orphans found, {event.orphans_deleted:,} deleted",
            )

    def echo(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            typer.echo(line, err=self.err)

    def ask(self, question: str) -> bool:
        if self.progress is not None:
            self.progress.stop()
        answer = typer.confirm(question, default=False, err=self.err)
        if self.progress is not None:
            self.progress.start()
        return answer


def _describe_plan(plan: CleanupPlan) -> list[str]:
    return [
        f"Older than {plan.cutoff:%Y-%m-%d %H:%M} UTC, after listing {plan.keys_listed:,} keys:",
        f"  {plan.orphans:,} orphaned objects ({format_bytes(plan.orphan_bytes)})",
        f"  {plan.stale_media:,} stale uploaded media items used by no content "
        f"({format_bytes(plan.stale_media_bytes)})",
        f"  {plan.multipart_uploads:,} abandoned multipart uploads",
    ]


@app.command()
def orphans(
    older_than: OlderThanOpt = "24h",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Delete R2 objects no row references, stale uploaded media and abandoned multipart uploads."""
    from services.core.durations import parse_duration
    from services.maintenance.orphans import cleanup_orphans

    threshold = parse_duration(older_than)
    require_confirmable(yes or dry_run)
    display = _Display(enabled=is_tty() and not json_output, err=json_output)

    def ask(plan: CleanupPlan) -> bool:
        if plan.empty:
            return True
        for line in _describe_plan(plan):
            display.echo(line)
        return display.ask("Delete them?")

    def listed(candidate: Candidate) -> None:
        size = "" if candidate.size is None else f" ({format_bytes(candidate.size)})"
        display.echo(f"would delete {candidate.kind:<11} {candidate.key}{size}")

    with display:
        result = cleanup_orphans(
            container(),
            threshold,
            dry_run=dry_run,
            confirm=None if yes else ask,
            on_progress=display.update,
            on_candidate=listed if dry_run and not json_output else None,
        )
    if json_output:
        print_json({**asdict(result), "bytes_reclaimed": result.bytes_reclaimed})
    if result.locked_out:
        report_locked_out("cleanup", result.lock_holder, result.lock_stale, json_output)
    elif not json_output:
        _render_orphans(result, older_than)
    if result.aborted:
        typer.echo("Aborted; nothing was changed.", err=True)
        raise typer.Exit(1)
    if result.failed:
        typer.echo(
            f"Error: {result.delete_errors:,} objects could not be deleted "
            f"(first: {result.error_samples[0]}); they stay for the next run.",
            err=True,
        )
        raise typer.Exit(1)


def _render_orphans(result: OrphanCleanupResult, older_than: str) -> None:
    if result.aborted:
        return
    listed = (
        f"{result.keys_listed:,} keys listed in {result.bucket}: {result.keys_outside_layout:,} outside "
        f"the media/resource layout, {result.keys_too_young:,} newer than {older_than}, "
        f"{result.keys_checked:,} checked against the database."
    )
    typer.echo(listed)
    if result.dry_run:
        typer.echo(
            f"Dry run: would delete {result.orphans_found:,} orphaned objects "
            f"({format_bytes(result.orphan_bytes_found)}) and {result.stale_media_found:,} stale uploads "
            f"({format_bytes(result.stale_media_bytes_found)}), and abort {result.multipart_found:,} "
            "multipart uploads; nothing was changed."
        )
        return
    saved = f" ({result.saved_by_recheck:,} saved by the re-check)" if result.saved_by_recheck else ""
    typer.echo(
        f"Deleted {result.orphans_deleted:,} orphaned objects ({format_bytes(result.orphan_bytes_deleted)})"
        f"{saved}, {result.stale_media_deleted:,} stale uploads "
        f"({format_bytes(result.stale_media_bytes_deleted)}); aborted {result.multipart_aborted:,} "
        f"multipart uploads. Reclaimed {format_bytes(result.bytes_reclaimed)}."
    )


@app.command()
def sessions(dry_run: DryRunOpt = False, yes: YesOpt = False, json_output: JsonOpt = False) -> None:
    """Delete expired sessions and verification tokens, in batches."""
    from services.maintenance.sessions import SessionCleanupResult, cleanup_sessions

    require_confirmable(yes or dry_run)

    def ask(found: SessionCleanupResult) -> bool:
        if not (found.expired_sessions or found.expired_verification_tokens):
            return True
        return typer.confirm(
            f"Delete {found.expired_sessions:,} expired sessions and "
            f"{found.expired_verification_tokens:,} expired verification tokens?",
            default=False,
            err=json_output,
        )

    result = cleanup_sessions(container(), dry_run=dry_run, confirm=None if yes else ask)
    if json_output:
        print_json(result)
    if result.locked_out:
        report_locked_out("session cleanup", result.lock_holder, result.lock_stale, json_output)
    elif json_output or result.aborted:
        pass  # the JSON document says it all; an aborted run is reported below
    elif result.dry_run:
        typer.echo(
            f"Dry run: would delete {result.expired_sessions:,} expired sessions and "
            f"{result.expired_verification_tokens:,} expired verification tokens; nothing was changed."
        )
    else:
        typer.echo(
            f"Deleted {result.sessions_deleted:,} expired sessions and "
            f"{result.verification_tokens_deleted:,} expired verification tokens."
        )
    if result.aborted:
        typer.echo("Aborted; nothing was changed.", err=True)
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cleanup")
