"""Fixtures shared by the whole suite: a real PostgreSQL, per-test databases, settings, CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from services.settings import Settings
from tests.pg import TestPostgres

# Stand-in fixtures live one module per outside system.
pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.stripe", "tests.fixtures.email"]

# Every variable codex reads; the CLI runner clears the ones a test does not set, so the
# developer's own environment never leaks into a test.
CODEX_ENV = [
    "CODEX_HOME",
    "DATABASE_URL",
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
]


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> TestPostgres:
    server = TestPostgres(tmp_path_factory.mktemp("pg"))
    server.create_template()
    return server


@pytest.fixture
def db_name(pg: TestPostgres) -> Iterator[str]:
    name = pg.clone()
    yield name
    pg.drop(name)


@pytest.fixture
def db_url(pg: TestPostgres, db_name: str) -> str:
    return pg.sqlalchemy_url(db_name)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for one test: its own database and CODEX_HOME; nothing external configured."""
    return Settings(codex_home=tmp_path / "codex-home", database_url=db_url)


@pytest.fixture
def container(settings: Settings) -> Iterator[object]:
    from services.bootstrap import Container

    c = Container(settings)
    yield c
    c.close()


@pytest.fixture
def session(container) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A plain SQLAlchemy session on the test database, for factories and assertions (commits are real)."""
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
