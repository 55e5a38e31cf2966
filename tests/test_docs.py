"""Every command has help text and appears in the README, so none can be added silently."""

from __future__ import annotations

from pathlib import Path

import typer

from codex_cli.app import COMMANDS, app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(group, prefix: str = "codex"):  # type: ignore[no-untyped-def]
    if not hasattr(group, "list_commands"):
        return
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}"
        yield path, command
        yield from _commands(command, path)


def test_every_command_has_help_and_is_in_the_readme() -> None:
    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert {path.split()[1] for path, _command in commands} == set(COMMANDS)
    assert all(short.strip() for _module, short in COMMANDS.values())
    assert len(commands) >= 40
    for path, command in commands:
        assert (command.help or "").strip(), f"{path} has no help text"
        assert f"`{path}" in README or f"{path} " in README, f"{path} is not in README.md"


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python -m pytest" in README and "python -m pytest" in ci
