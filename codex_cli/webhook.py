"""`codex webhook` commands (issue 6); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the webhook commands are built."""
