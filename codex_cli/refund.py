"""`codex refund` commands (issue 7); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the refund commands are built."""
