"""The `codex` root app: global options, sub-command groups and the one place errors become exit codes."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from codex_cli import __version__
from codex_cli.common import State, set_state

EXIT_CODES = """Exit codes: 0 success; 1 failure (what failed is said); 2 usage error or invalid input;
3 not found; 4 finished, but found something that needs a person."""


class CodexGroup(TyperGroup):
    """The root group: loads command modules on demand (see COMMANDS) and translates service errors
    into one sentence on stderr and the mapped exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # Python hands undecodable argv bytes over as lone surrogates, and a NUL (possible when
        # called from Python) cannot be stored in PostgreSQL text; both would fail much later (printing,
        # the database), so refuse them here with the argument's position.
        for position, arg in enumerate(args, start=1):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in arg):
                shown = repr(arg.encode("utf-8", "surrogateescape"))[1:]
                typer.echo(f"Error: argument {position} ({shown}) is not valid UTF-8.", err=True)
                raise typer.Exit(2)
            if "\x00" in arg:
                typer.echo(f"Error: argument {position} contains a NUL character.", err=True)
                raise typer.Exit(2)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = load_command(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # The one-line help comes from COMMANDS, so listing them imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:  # noqa: BLE001 - the single translation point
            state = ctx.obj if isinstance(ctx.obj, State) else None
            debug = bool(state and state.debug)
            code, message = _translate(exc, state)
            if debug:
                import traceback

                traceback.print_exc()
            typer.echo(message, err=True)
            raise typer.Exit(code) from None
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a service error: the nearest class in the map below, else 1 (failure)."""
    from services.core import errors

    codes = {
        errors.ValidationError: 2,
        errors.NotFound: 3,
        errors.NeedsAttention: 4,
    }
    for cls in type(exc).__mro__:
        if cls in codes:
            return codes[cls]
    return 1


def _with_flag(message: str, field: str | None) -> str:
    """Point a service error at the option that sets `field`: "... 500." -> "... 500 (--limit)."."""
    if not field:
        return message
    flag = "--" + field.replace("_", "-")
    if flag in message:
        return message
    body, stop = (message[:-1], message[-1]) if message[-1:] in ".!?" else (message, ".")
    return f"{body} ({flag}){stop}"


def _translate(exc: BaseException, state: State | None) -> tuple[int, str]:
    from services.core.errors import CodexError

    if isinstance(exc, CodexError):
        return exit_code_for(exc), f"Error: {_with_flag(str(exc), getattr(exc, 'field', None))}"
    if isinstance(exc, KeyboardInterrupt):
        return 130, "Interrupted."
    from services.adapters.db import connection_error, is_connection_error

    if is_connection_error(exc) and state is not None and state._container is not None:
        url = state._container.__dict__.get("database_url") or state._container.settings.database_url
        return 1, f"Error: {connection_error(url, exc)}"
    return 1, f"Unexpected error ({type(exc).__name__}); rerun with --debug for the traceback."


app = typer.Typer(
    name="codex",
    cls=CodexGroup,
    help="Operator CLI for the Codex video platform.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"codex {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (never secrets).")
    ] = False,
) -> None:
    """Operator CLI for the Codex video platform: database, catalog, media, payments, cleanup."""
    ctx.obj = State(debug=debug)
    set_state(ctx.obj)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        logging.getLogger("pgserver").setLevel(logging.ERROR)


# Command name -> (module in codex_cli, one-line help for `codex --help`). A module is imported and its
# Typer commands are built only when one of its commands runs (or its own --help is asked for), so
# `codex --help` and every single command stay fast. Each module exposes `register(root)`.
# tests/test_docs.py checks that every entry loads, has help text and is in the README.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "Database schema: migrations, status, drift check, connection URL."),
    "config": ("config", "Show the effective settings (secrets masked) and which defaults are embedded."),
    "doctor": ("doctor", "Check every part (database, buckets, Stripe, email, webhook secret, APP_URL)."),
    "seed": ("seed", "Seed the platform: owner and organization, initial categories (idempotent)."),
    "content": ("content", "Content catalog: create, list, show, update, publish, unpublish, delete."),
    "media": ("media", "Media library: upload videos and audio to R2, presigned uploads, status."),
    "storage": ("storage", "Object storage: create the buckets, set their CORS and lifecycle rules."),
    "access": ("access", "Who may watch what: check access, grant complimentary access, libraries."),
    "purchases": ("access", "Purchases, newest first: list with filters, show one."),
    "users": ("access", "Users: list, show, create (customers), set-role; audited changes."),
    "email": ("email", "Email: the outbox (queue, drain, retry) and templates (preview, test, overrides)."),
    "checkout": ("payments", "Stripe Checkout: create a payment link for a customer and content."),
    "webhook": ("webhook", "Stripe webhooks: run the listener, inspect, replay, backfill, prune events."),
    "refund": ("refund", "Refund a completed purchase through Stripe (30-day window), with email and audit."),
    "reconcile": (
        "reconcile",
        "Find and fix purchases that drifted from Stripe (cron); exit 4 needs a person.",
    ),
    "cleanup": ("cleanup", "Remove what nobody uses: orphaned objects, stale uploads, expired sessions."),
}


_built: dict[str, Any] = {}


def load_command(name: str) -> Any:
    """Import the module behind `name` and build its click command (once per process: building
    reads every signature and type hint, and tests invoke the app hundreds of times)."""
    if name not in _built:
        _built[name] = _build_command(name)
    return _built[name]


def _build_command(name: str) -> Any:
    import importlib

    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    importlib.import_module(f"codex_cli.{COMMANDS[name][0]}").register(holder)
    from codex_cli.helpfmt import conventional

    return conventional(typer.main.get_group(holder).commands[name])


def main() -> None:
    try:
        app()
    finally:
        # The interpreter's shutdown runs full garbage collections over every object the command's
        # libraries built (botocore's service models, SQLAlchemy, pydantic): ~0.25 s of CPU for each
        # command, measured on `codex media upload`, to free memory the OS takes back anyway. Frozen
        # objects are left out of those collections; they are still freed, file buffers flushed.
        gc.freeze()
