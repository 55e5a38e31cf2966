"""The suite's own PostgreSQL: one embedded server per run, a migrated template, a clone per test."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

TEMPLATE = "codex_template"


class TestPostgres:
    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            self.server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
        self.admin_url = self.server.get_uri()  # postgresql://postgres:@/postgres?host=...

    def url(self, database: str) -> str:
        return self.admin_url.replace("/postgres?", f"/{database}?", 1)

    def sqlalchemy_url(self, database: str) -> str:
        return self.url(database).replace("postgresql://", "postgresql+psycopg://", 1)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create_template(self) -> None:
        from services.adapters.db import make_engine
        from services.adapters.migrations import migrate

        self._admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        self._admin(f'CREATE DATABASE "{TEMPLATE}"')
        engine = make_engine(self.url(TEMPLATE))
        migrate(engine)
        engine.dispose()

    def clone(self) -> str:
        """A fresh, migrated database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return name

    def create_empty(self) -> str:
        name = f"e_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
