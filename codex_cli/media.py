"""`codex media` commands (issue 5); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the media commands are built."""
