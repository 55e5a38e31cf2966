"""`codex email` commands (issue 3); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the email commands are built."""
