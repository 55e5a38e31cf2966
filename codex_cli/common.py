"""Shared CLI pieces: option bundles, the container accessor, confirmation and rendering helpers."""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from services.bootstrap import Container

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts and cron).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only report what would happen; change nothing.")]
OrgOpt = Annotated[str, typer.Option("--org", metavar="ORG", help="Organization, by slug or id.")]
MaybeOrgOpt = Annotated[
    str | None,
    typer.Option("--org", metavar="ORG", help="Organization (slug or id); needed with a content slug."),
]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by", metavar="EMAIL", help="Operator email (a platform_owner); defaults to CODEX_OPERATOR_EMAIL."
    ),
]


class State:
    """Per-invocation state kept on the root context."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        self._container: Container | None = None

    def container(self) -> Container:
        if self._container is None:
            from services.bootstrap import Container
            from services.settings import Settings

            self._container = Container(Settings.load())
        return self._container

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


_current: ContextVar[State | None] = ContextVar("codex_state", default=None)


def set_state(new: State) -> None:
    _current.set(new)


def state() -> State:
    """The state of the running invocation (the root callback sets it)."""
    current = _current.get()
    if current is None:
        current = State()
        _current.set(current)
    return current


def container() -> Container:
    """The composition root for this invocation (built on first use)."""
    return state().container()


def is_tty() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=not is_tty())


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def report_locked_out(what: str, holder: Any, stale: bool, json_output: bool = False) -> None:
    """A cron run found its lock held: say by whom, exit 0 while the holder is young, 4 past
    CODEX_LOCK_MAX_AGE (a hung or forgotten run that a person has to look at). `holder` is a LockHolder."""
    who = holder.describe() if holder is not None else "another process"
    if stale:
        typer.echo(
            f"Error: the {what} lock has been held by {who}, longer than CODEX_LOCK_MAX_AGE; "
            "check that process (it may be hung) and end it, then rerun.",
            err=True,
        )
        raise typer.Exit(4)
    if not json_output:
        typer.echo(f"Another {what} run is in progress ({who}); nothing done.")


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def print_json_line(value: Any) -> None:
    """One JSON object per line, for streams."""
    typer.echo(json.dumps(to_jsonable(value), separators=(",", ":")))


def print_table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table on a TTY; tab-separated lines when piped (easy to `cut`)."""
    if not is_tty():
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join("" if v is None else str(to_jsonable(v)) for v in row))
        return
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(to_jsonable(v)) for v in row))
    console().print(table)


def require_confirmable(yes: bool) -> None:
    """Refuse up front (before any work) when a confirmation will be needed but nobody can answer it."""
    if yes or sys.stdin.isatty():
        return
    from services.core.errors import ValidationError

    raise ValidationError("Refusing to continue without confirmation: pass --yes when not on a terminal.")


def confirm(question: str, yes: bool) -> None:
    """Go on when --yes was given or the person at the terminal says yes; refuse otherwise."""
    if yes:
        return
    require_confirmable(yes)
    if not typer.confirm(question, default=False):
        typer.echo("Aborted; nothing was changed.", err=True)
        raise typer.Exit(1)


def fail(message: str, code: int = 1) -> None:
    """Print one sentence to stderr and exit with `code`."""
    typer.echo(message, err=True)
    raise typer.Exit(code)
