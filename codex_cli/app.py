"""The `codex` root app: global options, sub-command groups and the one place errors become exit codes."""

from __future__ import annotations

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
    """Translates service errors into one sentence on stderr and the mapped exit code."""

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


def _translate(exc: BaseException, state: State | None) -> tuple[int, str]:
    from services.errors import CodexError

    if isinstance(exc, CodexError):
        return exc.exit_code, f"Error: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return 130, "Interrupted."
    from services.db import connection_error, is_connection_error

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


# Each module exposes `register(app)`; its heavy imports stay inside its commands.
COMMAND_MODULES = (
    "db",
    "config",
    "email",
    "seed",
    "content",
    "access",
    "media",
    "payments",
    "webhook",
    "refund",
    "reconcile",
    "cleanup",
    "doctor",
)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"codex_cli.{name}").register(app)


_register()


def main() -> None:
    app()
