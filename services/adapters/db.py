"""Database access: the connection URL (Neon or the embedded server), the engine and the unit of work."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.errors import DatabaseUnavailable
from services.core.masking import mask_url, url_target

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

EMBEDDED_DB_NAME = "codex"


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` URLs (Neon hands out both) and pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def embedded_server(home: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL under `home/pgdata`; it stays up between commands."""
    home.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(home / "pgdata", cleanup_mode=None)


def embedded_url(home: Path) -> str:
    """The URL of the `codex` database on the embedded server, creating that database on first use."""
    server = embedded_server(home)
    base = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    marker = home / "pgdata" / ".codex-database"
    url = base.replace("/postgres?", f"/{EMBEDDED_DB_NAME}?", 1)
    if not marker.exists():
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
            ).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
        marker.write_text("created by codex\n")
    return url


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    pgdata = home / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    # As root, pgserver runs the server as its own `pgserver` system user; stop it as that user too.
    server_user = "pgserver" if _is_root() else None
    pg_ctl(["-w", "stop"], pgdata=pgdata, user=server_user)
    return True


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def make_engine(url: str, *, prepare: bool = False) -> Engine:
    """An engine on `url`. Server-side prepared statements stay off unless `prepare` (a direct
    connection we started ourselves): behind a transaction-mode pooler such as Neon's PgBouncer the
    next transaction may run on another server connection, where psycopg's prepared statement (made
    after 5 uses) "does not exist" or "already exists". Off, every query is a plain extended-protocol
    query that any pooler passes through."""
    from sqlalchemy import create_engine

    connect_args = {} if prepare else {"prepare_threshold": None}
    return create_engine(
        normalize_url(url), pool_pre_ping=False, pool_size=5, max_overflow=10, connect_args=connect_args
    )


def make_session_factory(engine: Engine) -> Any:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind=engine, expire_on_commit=False)


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` says the server could not be reached or refused our credentials."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "OperationalError" not in names:
        return False
    text = str(exc).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "could not translate host",
            "failed to resolve host",
            "password authentication",
            "timeout expired",
            "no such file or directory",
            "does not exist",
        )
    )


def connection_error(url: str, exc: BaseException) -> DatabaseUnavailable:
    """One sentence naming the target with the password masked, and the driver's short reason."""
    from urllib.parse import urlsplit

    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    password = urlsplit(normalize_url(url)).password
    if password:
        reason = reason.replace(password, "***")
    reason = reason.removeprefix("(psycopg.OperationalError) ")
    return DatabaseUnavailable(
        f"Cannot connect to the database at {url_target(url)} ({mask_url(url)}): {reason}"
    )


class UnitOfWork:
    """`with uow:` opens a session; it rolls back on exit unless `commit()` was called."""

    def __init__(self, session_factory: Any) -> None:
        self._factory = session_factory
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
