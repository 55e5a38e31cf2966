"""Alembic migrations for the Codex schema (shipped inside the package so `pip install .` finds them)."""
