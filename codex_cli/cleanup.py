"""`codex cleanup` commands (issue 9); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the cleanup commands are built."""
