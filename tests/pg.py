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
        # A throwaway server: durability buys nothing here, and without it a clone and its drop cost
        # about a tenth (they were most of a database test's time). Never do this to a real server.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            self._admin(f"ALTER SYSTEM SET {setting} = off")
        self._admin("SELECT pg_reload_conf()")

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
        # FILE_COPY copies the template's files (cheap with fsync off) instead of WAL-logging each page.
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
        return name

    def create_empty(self) -> str:
        name = f"e_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


PGBOUNCER_PACKAGE = "pgbouncer"


def find_pgbouncer() -> str | None:
    import shutil

    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


class TestPgBouncer:
    """A real PgBouncer in transaction mode (Neon's pooler mode) in front of the suite's PostgreSQL.

    Clients reach it over TCP on 127.0.0.1; it reaches the server over its unix socket. Any database
    name is passed through (`*`), so every cloned test database is reachable through it."""

    def __init__(self, binary: str, pg: TestPostgres, root: Path, pool_size: int = 10) -> None:
        import os
        import socket
        import subprocess
        from urllib.parse import parse_qs, urlsplit

        socket_dir = parse_qs(urlsplit(pg.admin_url).query)["host"][0]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={socket_dir} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"max_client_conn = 1000\ndefault_pool_size = {pool_size}\n"
            # psycopg sends none of these as startup parameters, but a client may: let them through.
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        command = [binary, str(config)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # PgBouncer refuses to run as root; the embedded server runs as `pgserver` (its socket too).
            command[1:1] = ["-u", "pgserver"]
        self.log = (root / "pgbouncer.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pgbouncer did not start listening within 10 s")

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
