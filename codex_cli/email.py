"""`codex email`: list templates, preview one, send a test, manage database overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from codex_cli.common import ByOpt, DryRunOpt, JsonOpt, YesOpt, confirm, container, print_json, print_table

if TYPE_CHECKING:
    from services.email.outbox import DrainReport

app = typer.Typer(
    help="Email: the outbox (queue, drain, retry) and templates (preview, test, overrides).",
    no_args_is_help=True,
)

KeyArg = Annotated[
    str,
    typer.Argument(
        help="Template key: email-verification, password-reset, purchase-receipt, refund-confirmation."
    ),
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        help="A template variable as NAME=VALUE (repeatable); money as `12.00 eur`, dates as 2026-11-26. "
        "Variables not given get sample values.",
    ),
]


def _parse_data(pairs: list[str] | None) -> dict[str, str]:
    data: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE.", param_hint="--data")
        data[name.strip()] = value
    return data


@app.command("templates")
def templates_cmd(json_output: JsonOpt = False) -> None:
    """List the email templates, their variables and whether a database override replaces the file."""
    from services.email.operator import list_email_templates

    infos = list_email_templates(container())
    if json_output:
        print_json(infos)
        return
    print_table(
        ["key", "variables", "source", "description"],
        [
            [
                i.key,
                ", ".join(i.variables),
                f"override ({i.override_updated_at:%Y-%m-%d %H:%M})" if i.overridden else "file",
                i.description,
            ]
            for i in infos
        ],
    )


@app.command()
def preview(
    key: KeyArg,
    data: DataOpt = None,
    text: Annotated[bool, typer.Option("--text", help="Print only the text body.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Print only the HTML body.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Render a template as it would be sent (database override included), without sending it."""
    from services.email.operator import preview_email

    if text and html:
        raise typer.BadParameter("Choose one of --text and --html.", param_hint="--text/--html")
    rendered = preview_email(container(), key, _parse_data(data))
    if json_output:
        print_json(
            {
                "key": rendered.key,
                "subject": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "overridden": rendered.overridden,
                "data": {k: str(v) for k, v in rendered.data.items()},
            }
        )
    elif text:
        typer.echo(rendered.text, nl=False)
    elif html:
        typer.echo(rendered.html, nl=False)
    else:
        source = "database override" if rendered.overridden else "file template"
        typer.echo(f"Template: {rendered.key} ({source})")
        typer.echo(f"Subject:  {rendered.subject}")
        typer.echo("")
        typer.echo(rendered.text, nl=False)
        typer.echo("")
        typer.echo(f"(HTML body: {len(rendered.html)} characters; show it with --html)")


@app.command("send-test")
def send_test(
    key: KeyArg,
    to: Annotated[str, typer.Option("--to", help="Recipient address.")],
    data: DataOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Send one template to an address, through Resend or the outbox, to check delivery."""
    from services.email.operator import send_test_email

    sent = send_test_email(container(), key, to, _parse_data(data))
    if json_output:
        print_json(sent)
        return
    retry = " (after a retry)" if sent.attempts > 1 else ""
    typer.echo(f"Sent {sent.template} to {sent.recipient} via {sent.via}{retry}.")
    typer.echo(f"message id: {sent.message_id}")


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"Cannot read {path}: {exc.strerror or exc}.") from None


@app.command("set-override")
def set_override(
    key: KeyArg,
    subject_file: Annotated[
        Path | None, typer.Option("--subject-file", dir_okay=False, help="File with the subject template.")
    ] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html-file", dir_okay=False, help="File with the HTML body template.")
    ] = None,
    text_file: Annotated[
        Path | None, typer.Option("--text-file", dir_okay=False, help="File with the text body template.")
    ] = None,
    by: ByOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Store a database override of a template (parts not given keep the file's); it must render."""
    from services.email.templates import save_template_override

    if subject_file is None and html_file is None and text_file is None:
        raise typer.BadParameter("Give at least one of --subject-file, --html-file, --text-file.")
    saved = save_template_override(
        container(), key, _read(subject_file), _read(html_file), _read(text_file), by=by, audited=True
    )
    if json_output:
        print_json({"key": saved.key, "overridden": True, "updated_at": saved.updated_at})
        return
    typer.echo(f"Saved the override of {saved.key}; `codex email preview {saved.key}` shows it.")


@app.command("reset-override")
def reset_override(
    key: KeyArg,
    by: ByOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Delete the database override of a template so the file template is used again."""
    from services.email.templates import delete_template_override

    c = container()
    if dry_run:
        delete_template_override(c, key, by=by, dry_run=True)
        if json_output:
            print_json({"key": key, "deleted": False, "dry_run": True})
        else:
            typer.echo(f"Would delete the override of {key} (dry run; nothing changed).")
        return
    confirm(f"Delete the override of {key} and go back to the file template?", yes)
    delete_template_override(c, key, by=by)
    if json_output:
        print_json({"key": key, "deleted": True, "dry_run": False})
        return
    typer.echo(f"Deleted the override of {key}; the file template applies again.")


# --- the outbox ---

StatusOpt = Annotated[
    str | None,
    typer.Option("--status", help="Only messages in this state: pending, sent or dead.", metavar="STATUS"),
]


def _drain_lines(report: DrainReport) -> None:
    for d in report.deliveries:
        if d.status == "sent":
            typer.echo(f"sent  {d.id} {d.template} to {d.recipient}")
        elif d.status == "retry":
            typer.echo(
                f"retry {d.id} {d.template} to {d.recipient} (attempt {d.attempts}): {d.error}", err=True
            )
        elif d.status == "dead":
            typer.echo(
                f"dead  {d.id} {d.template} to {d.recipient} (attempt {d.attempts}): {d.error}", err=True
            )
        else:
            typer.echo(f"busy  {d.id}: another drainer holds it, or it is not pending", err=True)
    typer.echo(
        f"{report.sent} sent, {report.retried} to retry later, {report.dead} parked dead now; "
        f"{report.dead_total} dead in the outbox."
    )


def _drain_json(report: DrainReport) -> dict[str, Any]:
    return {
        "sent": report.sent,
        "retry": report.retried,
        "dead": report.dead,
        "dead_total": report.dead_total,
        "deliveries": report.deliveries,
    }


@app.command()
def drain(
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts", min=1, max=100, help="Park a message as dead after this many failed sends."
        ),
    ] = 5,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=1_000_000, help="Send at most this many messages.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Send every due message in the outbox (for cron); exit 4 when any message is parked dead."""
    from services.email.outbox import drain_outbox

    report = drain_outbox(container(), max_attempts=max_attempts, limit=limit)
    if json_output:
        print_json(_drain_json(report))
    else:
        _drain_lines(report)
    if report.dead_total:
        if not json_output:
            typer.echo(
                f"{report.dead_total} email(s) are dead: `codex email queue --status dead` lists them, "
                "`codex email retry --all-dead` sends them again.",
                err=True,
            )
        raise typer.Exit(4)


@app.command()
def queue(
    status: StatusOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many, newest first.")
    ] = 50,
    json_output: JsonOpt = False,
) -> None:
    """List the outbox: queued, sent and dead emails, newest first (recipients masked)."""
    from services.email.outbox import list_outbox

    items = list_outbox(container(), status=status, limit=limit)
    if json_output:
        print_json(items)
        return
    print_table(
        ["id", "template", "to", "status", "attempts", "created", "next / sent", "last error"],
        [
            [
                i.id,
                i.template,
                i.recipient,
                i.status,
                i.attempts,
                f"{i.created_at:%Y-%m-%d %H:%M:%S}",
                f"{(i.next_attempt_at or i.sent_at):%Y-%m-%d %H:%M:%S}"
                if (i.next_attempt_at or i.sent_at)
                else "",
                i.last_error or "",
            ]
            for i in items
        ],
    )


@app.command()
def retry(
    message_id: Annotated[
        str | None, typer.Argument(help="The message to send again (an id from `codex email queue`).")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every message parked dead.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Put a dead (or pending) message back in the queue with fresh attempts and send it now."""
    from services.email.outbox import retry_outbox

    if (message_id is None) == (not all_dead):
        raise typer.BadParameter("Give a message ID or --all-dead (not both).")
    report = retry_outbox(container(), message_id, all_dead=all_dead)
    if json_output:
        print_json(_drain_json(report))
    elif not report.deliveries:
        typer.echo("No dead emails to retry.")
    else:
        _drain_lines(report)
    if report.count("sent") != len(report.deliveries):
        raise typer.Exit(4)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="email")
