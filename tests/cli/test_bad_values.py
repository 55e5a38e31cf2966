"""Every command, every parameter, a set of bad values: always a sentence, never a traceback.

One cloned database for the whole matrix (the commands run in-process through CliRunner); values a
command accepts may change rows there, which is why it is a throwaway clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.core import TyperArgument, TyperOption

from codex_cli.app import app

BAD_VALUES = {
    "empty": "",
    "huge": "9" * 30,
    "negative": "-1",
    "huge duration": "99999999999d",
    "wrong type": "1.5",
    "control characters": "a\x1b[31mred\x07\x7f",
    "bidi override": "\u202etxt.exe",
}
# Refused for every argument before any command runs (tested once below, not per parameter).
REFUSED_EVERYWHERE = {"not UTF-8": "caf\udce9", "NUL": "a\x00b"}
# Commands that would wait for something other than their input (a server) are run with a bad value
# only where it is checked before they start.
SKIP = {("webhook", "listen"), ("media", "worker")}  # servers: run until signalled


def _leaf_commands(group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def _valued(command):  # type: ignore[no-untyped-def]
    return [
        p
        for p in command.params
        if isinstance(p, TyperArgument) or (isinstance(p, TyperOption) and not p.is_flag and p.name != "help")
    ]


def _filler(param) -> str:  # type: ignore[no-untyped-def]
    """A well-formed value for the parameters not under test, so the bad one is what gets checked."""
    desc = param.type_descriptor
    if desc.annotation is int or "int" in str(desc.annotation):
        return "1"
    if desc.is_path:
        return "missing.mp4"
    if param.name in {"user", "customer", "email", "to", "by", "ref"}:
        return "nobody@example.com"
    return "x"


def _args(path: tuple[str, ...], params, bad_param, value: str) -> list[str]:  # type: ignore[no-untyped-def]
    args = list(path)
    for p in params:
        if p is not bad_param and not p.required:
            continue
        given = value if p is bad_param else _filler(p)
        if isinstance(p, TyperArgument):
            args.append(given)
        else:
            args.append(f"{p.opts[0]}={given}" if given.startswith("-") else p.opts[0])
            if not given.startswith("-"):
                args.append(given)
    return args


@pytest.mark.commits
def test_every_command_answers_bad_values_with_a_sentence(cli, tmp_path: Path) -> None:
    # The fillers name things that exist, so checks after the lookups are reached too: organization
    # `x`, whose owner nobody@example.com is a platform owner (the operator of audited commands).
    seeded = cli("seed", "owner", "--email", "nobody@example.com", "--name", "Nobody", "--org-slug", "x")
    assert seeded.exit_code == 0, seeded.output
    root = typer.main.get_command(app)
    cases = 0
    problems = []
    for path, command in _leaf_commands(root):
        if path in SKIP:
            continue
        params = _valued(command)
        for param in params:
            for label, value in BAD_VALUES.items():
                args = _args(path, params, param, value)
                result = cli(*args)
                cases += 1
                text = result.output
                if "Traceback" in text or "Unexpected error" in text or result.exit_code not in (0, 1, 2, 3):
                    problems.append(
                        f"codex {' '.join(path)} {param.name}={label}: {result.exit_code} {text!r}"
                    )
    assert cases > 800
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("label", sorted(REFUSED_EVERYWHERE))
@pytest.mark.parametrize(
    "args",
    [("users", "show", "{}"), ("content", "list", "--org", "{}"), ("seed", "categories", "--file", "{}")],
)
def test_arguments_that_are_not_text_are_refused_before_anything_runs(
    label: str, args: tuple[str, ...]
) -> None:
    from typer.testing import CliRunner

    value = REFUSED_EVERYWHERE[label]
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never"}  # never reached
    result = CliRunner().invoke(app, [a.replace("{}", value) for a in args], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: argument ") and "Unexpected" not in result.output
