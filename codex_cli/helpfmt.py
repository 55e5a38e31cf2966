"""Conventional help screens: upper-case metavars (`TEXT`, `INTEGER`, `PATH...`) and Click-style usage lines.

Typer 0.27+ prints `<str>`, `<int range>`, `<list[Path]>` and wraps required arguments in braces
(`{PURCHASE_ID}`). `conventional(command)` walks a built click command tree once and gives every
parameter without an explicit metavar the one Click itself would print, and every argument the plain
usage form (`PURCHASE_ID`, `[NAME]`, `PATH...`). tests/cli/test_help.py renders every screen.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


class ConventionalArgument(TyperArgument):
    """An argument shown the Click way: `NAME`, `[NAME]` when optional, `NAME...` when repeated."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1:
            name += "..."
        return name

    def _rich_display_name(self) -> str:
        name = self.display_name_raw
        return f"{name}..." if self.nargs != 1 else name

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}


def _type_metavar(param: Any) -> str:
    desc = param.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    if desc.is_list:
        annotation = (getattr(annotation, "__args__", None) or (str,))[0]
    if annotation in _NAMES:
        return _NAMES[annotation]
    return getattr(annotation, "__name__", "VALUE").upper()


def conventional(command: Any) -> Any:
    """Give `command` and its sub-commands conventional metavars (in place); returns the command."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "ARG").upper()
            param.__class__ = ConventionalArgument
        elif isinstance(param, TyperOption) and not (param.is_flag or param.count) and param.metavar is None:
            metavar = _type_metavar(param)
            param.metavar = f"{metavar}..." if param.nargs != 1 else metavar
    for sub in getattr(command, "commands", {}).values():
        conventional(sub)
    return command
