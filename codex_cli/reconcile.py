"""`codex reconcile` commands (issue 8); not built yet."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds nothing until the reconcile commands are built."""
