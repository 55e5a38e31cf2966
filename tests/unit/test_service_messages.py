"""Issue #13: service messages name the value, not the flag; the CLI adds the flag from `field=`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
from typer.core import TyperOption

from codex_cli.app import _with_flag, app

SERVICES = Path(__file__).resolve().parents[2] / "services"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
# Operator hints in results (not errors) that name a whole command or flag, with no `field` to carry it.
HINTS = {
    ("media/jobs.py", "--force"),  # JobResult "Already ready (use --force to process again)."
    ("maintenance/doctor.py", "--status"),  # doctor row: `codex email queue --status dead`
    ("maintenance/doctor.py", "--all-dead"),  # doctor row: `codex email retry --all-dead`
    ("payments/refunds.py", "--status"),  # refund's email outcome: `codex email queue --status dead`
}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, nodes)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }


def _service_strings() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        rel = path.relative_to(SERVICES).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found.append((rel, node.value))
    return found


def _cli_options() -> set[str]:
    options: set[str] = set()

    def walk(group) -> None:  # type: ignore[no-untyped-def]
        ctx = typer.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if hasattr(command, "list_commands"):
                walk(command)
            else:
                options.update(o for p in command.params if isinstance(p, TyperOption) for o in p.opts)

    walk(typer.main.get_command(app))
    return options


def test_service_strings_name_no_command_line_flags() -> None:
    named = [
        (rel, flag, text)
        for rel, text in _service_strings()
        for flag in FLAG.findall(text)
        if (rel, flag) not in HINTS
    ]
    assert named == []


def test_every_field_a_service_error_names_is_a_cli_option() -> None:
    fields = {
        m.group(1)
        for path in SERVICES.rglob("*.py")
        for m in re.finditer(r"\bfield=\"(\w+)\"", path.read_text(encoding="utf-8"))
    }
    missing = sorted(f for f in fields if "--" + f.replace("_", "-") not in _cli_options())
    assert fields and missing == []


@pytest.mark.parametrize(
    ("message", "field", "shown"),
    [
        ("The limit must be at least 1.", "limit", "The limit must be at least 1 (--limit)."),
        ("No period", "older_than", "No period (--older-than)."),
        ("Already says --slug.", "slug", "Already says --slug."),
        ("Nothing to add.", None, "Nothing to add."),
    ],
)
def test_the_cli_appends_the_flag_of_the_field(message: str, field: str | None, shown: str) -> None:
    assert _with_flag(message, field) == shown
