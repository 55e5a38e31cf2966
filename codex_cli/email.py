"""`codex email`: list templates, preview one, send a test, manage database overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codex_cli.common import ByOpt, DryRunOpt, JsonOpt, YesOpt, confirm, container, print_json, print_table

app = typer.Typer(
    help="Email templates: list, preview, send a test, override from the database.", no_args_is_help=True
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


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="email")
