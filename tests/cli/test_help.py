"""Every help screen is conventional: upper-case metavars, Click-style usage lines, no Typer placeholders."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from codex_cli.app import app

runner = CliRunner()


def _paths(group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name)
        if hasattr(command, "list_commands"):
            yield from _paths(command, (*prefix, name))


def _screens() -> dict[str, str]:
    screens = {}
    for path in [(), *_paths(typer.main.get_command(app))]:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        screens[" ".join(("codex", *path))] = result.output
    return screens


def test_every_help_screen_uses_conventional_metavars() -> None:
    screens = _screens()
    assert len(screens) >= 45
    for path, text in screens.items():
        assert not re.search(r"<[^>\s]+( [^>\s]+)*>", text), f"{path} --help shows a <type> metavar:\n{text}"
        usage = next(line for line in text.splitlines() if line.startswith("Usage:"))
        assert usage.startswith(f"Usage: {path} "), usage
        # `{a|b}` is Click's choice list; `{NAME}` is Typer's required-argument placeholder.
        assert not re.search(r"\{[^}|]*\}", usage), f"{path}: {usage}"
        # An option's help record: `  -c, --concurrency INTEGER  ...`
        for word in re.findall(r"^  (?:-\w, )?--[-\w]+ ([^\s\[]\S*)", text, re.M):
            assert word == word.upper(), f"{path}: lower-case metavar {word!r}"


def test_typed_metavars_name_what_to_give() -> None:
    screens = _screens()
    assert "Usage: codex media upload [OPTIONS] PATH..." in screens["codex media upload"]
    assert "Usage: codex refund [OPTIONS] PURCHASE_ID\n" in screens["codex refund"]
    assert "--org ORG" in screens["codex media upload"]
    assert "--by EMAIL" in screens["codex refund"]
    assert "--limit INTEGER" in screens["codex content list"]
    assert "--content ID|SLUG" in screens["codex checkout create"]
    assert "--reason TEXT" in screens["codex refund"]
