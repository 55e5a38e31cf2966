"""`codex content` commands (issue 4); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the content commands are built."""
