"""`codex payments` commands (issue 6); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the payments commands are built."""
