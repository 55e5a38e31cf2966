"""Migrations: idempotent upgrade, full downgrade and re-upgrade, drift detection, transactional failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

import migrations as migrations_package
from services.adapters import migrations
from services.adapters.db import make_engine
from services.core.errors import ValidationError


@pytest.fixture
def empty_engine(pg):  # type: ignore[no-untyped-def]
    name = pg.create_empty()
    engine = make_engine(pg.url(name))
    yield engine
    engine.dispose()
    pg.drop(name)


MIGRATIONS = Path(migrations_package.__file__).parent / "versions"


def test_migrate_is_idempotent(empty_engine) -> None:
    first = migrations.migrate(empty_engine)
    assert first.before is None and first.after == migrations.get_status(empty_engine).head
    revisions = list(MIGRATIONS.glob("0*.py"))
    assert len(first.applied) == len(revisions) >= 1
    second = migrations.migrate(empty_engine)
    assert second.applied == [] and second.after == first.after


def test_downgrade_to_base_and_upgrade_again(empty_engine) -> None:
    migrations.migrate(empty_engine)
    migrations.downgrade(empty_engine, "base")
    with empty_engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema='public' AND table_name <> 'alembic_version'"
            )
        ).scalar()
        enums = conn.execute(text("SELECT count(*) FROM pg_type WHERE typtype = 'e'")).scalar()
    assert tables == 0 and enums == 0
    assert migrations.migrate(empty_engine).after is not None
    assert migrations.check_drift(empty_engine) == []


def test_unknown_revision_is_refused_and_database_untouched(empty_engine) -> None:
    with pytest.raises(ValidationError, match="Unknown revision"):
        migrations.migrate(empty_engine, to="deadbeef")
    assert migrations.get_status(empty_engine).current is None


def test_a_failing_migration_leaves_the_previous_revision(empty_engine) -> None:
    # A table the migration wants to create already exists: the upgrade fails part-way, and
    # transactional DDL rolls every statement back.
    with empty_engine.begin() as conn:
        conn.execute(text("CREATE TABLE content_tags (x int)"))
    with pytest.raises(Exception, match="content_tags"):
        migrations.migrate(empty_engine)
    with empty_engine.connect() as conn:
        users = conn.execute(text("SELECT to_regclass('public.users')")).scalar()
    assert users is None
    assert migrations.get_status(empty_engine).current is None


def test_check_reports_no_drift_then_an_out_of_band_alter(db_url) -> None:
    engine = make_engine(db_url)
    assert migrations.check_drift(engine) == []
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN nickname text"))
    assert migrations.check_drift(engine) == ["column users.nickname: not in models"]
    engine.dispose()
