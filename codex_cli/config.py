"""`codex config`: the effective settings, secrets masked, and which parts run on embedded defaults."""

from __future__ import annotations

import typer

from codex_cli.common import JsonOpt, print_json, print_table


def config(json_output: JsonOpt = False) -> None:
    """Show the effective settings (secrets masked) and which defaults are embedded."""
    from services.settings import Settings

    settings = Settings.load()
    rows = settings.describe()
    embedded = settings.embedded_parts()
    if json_output:
        print_json(
            {
                "settings": {name: {"value": value, "source": source} for name, value, source in rows},
                "embedded": embedded,
            }
        )
        return
    print_table(["VARIABLE", "VALUE", "SOURCE"], [list(r) for r in rows])
    for part, where in embedded.items():
        typer.echo(f"{part}: {where}")


def register(root: typer.Typer) -> None:
    root.command("config")(config)
