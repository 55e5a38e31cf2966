"""Database access: the connection URL (Neon or the embedded server), the engine and the unit of work."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.errors import DatabaseUnavailable
from services.core.masking import mask_url, url_target

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

EMBEDDED_DB_NAME = "codex"


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` URLs (Neon hands out both) and pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# As root, pgserver runs postgres as its own `pgserver` user and, on every start, adds g+rx,o+rx to
# every parent folder of the data directory (and of its own binaries). So as root the data lives
# outside CODEX_HOME, in a folder of its own under a system path that is open to everyone anyway;
# CODEX_HOME (outbox, resume records, objects) stays 0700.
ROOT_DATA_BASE = Path("/var/lib/codex-pgserver")


def embedded_data_dir(home: Path) -> Path:
    """The embedded server's data directory: `home/pgdata`, or as root `/var/lib/codex-pgserver/<hash
    of CODEX_HOME>/pgdata` (one server per CODEX_HOME)."""
    if not _is_root():
        return home / "pgdata"
    import hashlib

    digest = hashlib.sha256(str(home.expanduser().resolve()).encode()).hexdigest()[:12]
    return ROOT_DATA_BASE / digest / "pgdata"


def _would_open(path: Path, created_by_codex: set[Path]) -> Path | None:
    """The first parent of `path` that pgserver's chmod g+rx,o+rx would loosen and codex did not create."""
    import stat

    wanted = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for folder in path.parents:
        if folder in created_by_codex or not folder.exists():
            continue
        if folder.stat().st_mode & wanted != wanted:
            return folder
    return None


def _prepare_root_layout(home: Path, pgdata: Path) -> None:
    """As root: refuse the old layout under CODEX_HOME and any folder pgserver would open that codex did
    not make; create the data directory's own parents (open: they hold nothing but the data dir)."""
    import os

    from services.core.errors import ConfigurationError

    legacy = home / "pgdata"
    if (legacy / "PG_VERSION").exists():
        raise ConfigurationError(
            f"The embedded PostgreSQL data is in {legacy}, where the server (run as user pgserver) would "
            f"open CODEX_HOME to other users; stop it (`codex db stop`) and move it: "
            f"mkdir -p {pgdata.parent} && mv {legacy} {pgdata}"
        )
    created = {ROOT_DATA_BASE, pgdata.parent}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    for target in (pgdata, POSTGRES_BIN_PATH):
        closed = _would_open(target, created)
        if closed is not None:
            raise ConfigurationError(
                f"The embedded PostgreSQL runs as user pgserver and must reach {target}, but {closed} is "
                "closed to other users and codex will not open a folder it did not create; set "
                "DATABASE_URL, run codex as a regular user, or open that folder yourself (chmod go+rx)."
            )
    for folder in (ROOT_DATA_BASE, pgdata.parent):
        if not folder.exists():
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o755)
                os.chmod(folder, 0o755)
    pgdata.mkdir(mode=0o700, exist_ok=True)


def embedded_server(home: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL (see `embedded_data_dir`); it stays up between commands."""
    from services.adapters.private_files import private_dir

    private_dir(home)
    pgdata = embedded_data_dir(home)
    if _is_root():
        _prepare_root_layout(home, pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(pgdata, cleanup_mode=None)


def embedded_url(home: Path) -> str:
    """The URL of the `codex` database on the embedded server, creating that database on first use."""
    server = embedded_server(home)
    base = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    marker = embedded_data_dir(home) / ".codex-database"
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
    pgdata = embedded_data_dir(home)
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


def libpq_url(url: str) -> str:
    """`url` as libpq reads it: SQLAlchemy's `postgresql+psycopg://` scheme becomes `postgresql://`."""
    url = normalize_url(url)
    return "postgresql://" + url.removeprefix("postgresql+psycopg://")


def connect(url: str, *, prepare: bool = False) -> psycopg.Connection[Any]:
    """A psycopg connection of its own, without SQLAlchemy, for a command whose database work is a
    few fixed statements (`codex media upload`): importing SQLAlchemy and the models costs ~0.3 s of
    CPU, more than such a command's queries. In autocommit mode: each unit of work is a
    `with conn.transaction():` block (a savepoint when the connection is already in a transaction).
    Prepared statements off unless `prepare`, for the reason given in `make_engine`. A connection
    failure is a DatabaseUnavailable naming the target, the password masked."""
    import psycopg

    try:
        return psycopg.connect(libpq_url(url), autocommit=True, prepare_threshold=5 if prepare else None)
    except psycopg.OperationalError as exc:
        raise connection_error(url, exc) from None


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
