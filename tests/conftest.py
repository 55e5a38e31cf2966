"""Fixtures shared by the whole suite: a real PostgreSQL, per-test databases, settings, CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.settings import Settings
from tests.pg import PGBOUNCER_PACKAGE, TestPgBouncer, TestPostgres, find_pgbouncer

# Stand-in fixtures live one module per outside system.
pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.stripe", "tests.fixtures.email"]

# Every variable codex reads; the CLI runner clears the ones a test does not set, so the
# developer's own environment never leaks into a test.
CODEX_ENV = [
    "CODEX_HOME",
    "DATABASE_URL",
    "DATABASE_URL_UNPOOLED",
    "R2_ACCOUNT_ID",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_ENDPOINT_URL",
    "R2_MEDIA_BUCKET",
    "R2_ASSETS_BUCKET",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET_PAYMENT",
    "STRIPE_API_BASE",
    "RESEND_API_KEY",
    "RESEND_API_URL",
    "EMAIL_FROM_ADDRESS",
    "EMAIL_FROM_NAME",
    "APP_URL",
    "CODEX_OPERATOR_EMAIL",
    "CODEX_LOCK_MAX_AGE",
    "CODEX_UPLOAD_STALL_SECONDS",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A base temp dir of this run's own. pytest's default (`$TMPDIR/pytest-of-USER/pytest-N`, the
    last three kept) lets a second suite running on the machine delete the first one's directories,
    its PostgreSQL data directory among them, mid-run."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix="codex-tests-")
        config._codex_basetemp = config.option.basetemp  # type: ignore[attr-defined]
    if os.geteuid() == 0 and not hasattr(config, "workerinput"):
        # As root, pgserver runs PostgreSQL as user `pgserver` and creates that user on first use.
        # Created here, once, before the workers start: on a fresh machine the workers each ran
        # `useradd` at once, one data directory was given to a uid that then did not exist, and
        # every test of that worker failed at initdb ("could not change permissions").
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core, at most 4 (each starts its own PostgreSQL and stand-ins; most
    tests wait on a server or a subprocess, so more workers than that only add servers)."""
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_unconfigure(config: pytest.Config) -> None:
    made = getattr(config, "_codex_basetemp", None)
    if made:
        import shutil

        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    root = tmp_path_factory.mktemp("pg")
    if os.geteuid() == 0:
        # As root the server runs as user `pgserver`, which must reach its data: not under
        # /tmp/pytest-of-root, which every other pytest run on the machine closes again (0700),
        # killing a running server. A folder of its own in /tmp, removed at the end.
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="codex-test-pg-"))
        root.chmod(0o755)
    server = TestPostgres(root)
    server.create_template()
    yield server
    if os.geteuid() == 0:
        server.server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(pg: TestPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPgBouncer]:
    """PgBouncer in transaction mode in front of `pg`: skipped when the binary is missing, except
    under CI=true, where a missing PgBouncer fails the pooled tests instead of hiding them."""
    binary = find_pgbouncer()
    if binary is None:
        message = (
            f"PgBouncer is not installed (Debian package `{PGBOUNCER_PACKAGE}`: "
            f"apt-get install {PGBOUNCER_PACKAGE}); the pooled variants of these tests did not run"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    bouncer = TestPgBouncer(binary, pg, tmp_path_factory.mktemp("pgbouncer"))
    yield bouncer
    bouncer.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.pooled` tests run directly and through PgBouncer (ids `direct` / `pgbouncer`)."""
    if metafunc.definition.get_closest_marker("pooled") and "db_route" in metafunc.fixturenames:
        metafunc.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)


@pytest.fixture
def db_route(request: pytest.FixtureRequest) -> str:
    """How the test's settings reach its database: `direct`, or `pgbouncer` for pooled tests."""
    return getattr(request, "param", "direct")


# Fixtures that reach the database through a connection of their own (the CLI, listeners, containers
# built from settings): a test that uses one needs a cloned database whose commits are real.
OWN_CONNECTION_FIXTURES = {
    "cli",
    "stripe_cli",
    "refund_cli",
    "s3_cli",
    "s3_settings",
    "s3_container",
    "stripe_settings",
    "stripe_container",
    "resend_settings",
    "webhook_settings",
    "start_listener",
    "listener",
    "webhook",
    "db_url",
}
# Where a rolled-back test's settings point: a database that does not exist, so a connection the
# test did not get from its `container` fails at once instead of writing outside the rollback.
NO_SUCH_DATABASE = "codex_rollback_only_use_the_container_fixture"


def _rolls_back(request: pytest.FixtureRequest) -> bool:
    """Tests that touch the database only through `container`/`session` run in one rolled-back
    transaction; `@pytest.mark.commits` (concurrency, engine-level locks) gets a cloned database."""
    if request.node.get_closest_marker("commits") or request.node.get_closest_marker("pooled"):
        return False
    names = set(request.fixturenames)
    return bool(names & {"container", "session"}) and not names & OWN_CONNECTION_FIXTURES


@pytest.fixture(scope="session")
def rollback_engine(pg: TestPostgres) -> Iterator[Any]:
    """One migrated database shared by the rolled-back tests; nothing is ever committed to it."""
    from services.adapters.db import make_engine

    engine = make_engine(pg.sqlalchemy_url(pg.clone()))
    yield engine
    engine.dispose()


@pytest.fixture
def db_name(request: pytest.FixtureRequest, pg: TestPostgres) -> Iterator[str]:
    if _rolls_back(request):
        yield NO_SUCH_DATABASE
        return
    name = pg.clone()
    yield name
    pg.drop(name)


def _route(request: pytest.FixtureRequest, pg: TestPostgres, db_name: str, db_route: str) -> str:
    if db_route == "pgbouncer":
        return request.getfixturevalue("pgbouncer").sqlalchemy_url(db_name)  # type: ignore[no-any-return]
    return pg.sqlalchemy_url(db_name)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, pg: TestPostgres, db_name: str, db_route: str) -> str:
    return _route(request, pg, db_name, db_route)


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, pg: TestPostgres, db_name: str, db_route: str
) -> Settings:
    """Settings for one test: its own database (directly or through PgBouncer) and CODEX_HOME;
    nothing external configured."""
    url = _route(request, pg, db_name, db_route)
    return Settings(codex_home=tmp_path / "codex-home", database_url=url)


@pytest.fixture
def container(request: pytest.FixtureRequest, settings: Settings) -> Iterator[object]:
    from services.bootstrap import Container

    c = Container(settings)
    if settings.database_url.endswith(NO_SUCH_DATABASE):
        from sqlalchemy.orm import sessionmaker

        # Every unit of work joins the test's outer transaction as a savepoint: `uow.commit()`
        # releases it, the test's end rolls everything back. No clone, no cleanup.
        conn = request.getfixturevalue("rollback_engine").connect()
        outer = conn.begin()
        c.__dict__["_session_factory"] = sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        yield c
        outer.rollback()
        conn.close()
    else:
        yield c
    c.close()


@pytest.fixture
def session(container) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A SQLAlchemy session on the test database, for factories and assertions (in the rolled-back
    transaction, or committed for real in a cloned database)."""
    with container.uow() as uow:
        yield uow.session


def settings_env(settings: Settings) -> dict[str, str | None]:
    env: dict[str, str | None] = {name: None for name in CODEX_ENV}
    defaults = Settings(codex_home=settings.codex_home)
    for name in CODEX_ENV:
        value = getattr(settings, name.lower())
        if name == "CODEX_HOME" or value != getattr(defaults, name.lower()):
            env[name] = str(value)
    return env


class Cli:
    """Runs `codex` in-process with Typer's CliRunner against the test's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def with_settings(self, **changes: object) -> Cli:
        return Cli(replace(self.settings, **changes))

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None):  # type: ignore[no-untyped-def]
        from typer.testing import CliRunner

        from codex_cli.app import app

        full_env = settings_env(self.settings)
        full_env.update(env or {})
        return CliRunner().invoke(app, list(args), input=input, env=full_env, catch_exceptions=False)


@pytest.fixture
def cli(settings: Settings) -> Cli:
    return Cli(settings)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own directory so a developer's `.env` is never read."""
    monkeypatch.chdir(tmp_path)
    for name in CODEX_ENV:
        if name in os.environ:
            monkeypatch.delenv(name)
