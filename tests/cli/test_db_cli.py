"""`codex db ...` and the root app as an operator sees them: output, exit codes, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CODEX_ENV


def test_status_on_a_migrated_database(cli) -> None:
    result = cli("db", "status")
    assert result.exit_code == 0, result.output
    data = json.loads(cli("db", "status", "--json").stdout)
    assert f"current:  {data['head']}" in result.output and "up to date" in result.output
    assert data["current"] == data["head"] and data["up_to_date"] is True
    assert data["pending"] == [] and data["embedded"] is False


def test_migrate_twice_says_nothing_to_do(cli) -> None:
    result = cli("db", "migrate")
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_migrate_sql_prints_ddl_without_connecting(cli) -> None:
    result = cli.with_settings(database_url="postgresql://nobody:pw@127.0.0.1:1/none")(
        "db", "migrate", "--sql"
    )
    assert result.exit_code == 0
    assert (
        "CREATE TABLE users" in result.stdout
        and "CREATE UNIQUE INDEX uq_content_purchases_live" in result.stdout
    )


def test_unknown_revision_exits_2(cli) -> None:
    result = cli("db", "migrate", "--to", "nope")
    assert result.exit_code == 2 and "Unknown revision 'nope'" in result.stderr


def test_downgrade_needs_confirmation_off_a_tty_then_works_with_yes(cli) -> None:
    refused = cli("db", "downgrade", "base")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert "up to date" in cli("db", "status").output
    done = cli("db", "downgrade", "base", "--yes")
    assert done.exit_code == 0 and "now at revision base" in done.output
    revisions = len(list((Path(__file__).resolve().parents[2] / "migrations" / "versions").glob("0*.py")))
    assert f"{revisions} pending" in cli("db", "status").output
    assert cli("db", "migrate").exit_code == 0


def test_check_exits_4_on_drift(cli, db_url) -> None:
    assert cli("db", "check").exit_code == 0
    from sqlalchemy import text

    from services.adapters.db import make_engine

    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE content DROP COLUMN thumbnail_r2_key"))
    engine.dispose()
    result = cli("db", "check")
    assert result.exit_code == 4
    assert "column content.thumbnail_r2_key: missing in database" in result.output


def test_unreachable_database_is_one_sentence_with_password_masked(cli) -> None:
    bad = cli.with_settings(database_url="postgresql://app:s3cretpw@127.0.0.1:1/codex")
    result = bad("db", "status")
    assert result.exit_code == 1
    assert "Cannot connect to the database at 127.0.0.1:1/codex" in result.stderr
    assert "s3cretpw" not in result.output and "Traceback" not in result.output


def test_config_masks_secrets(cli) -> None:
    configured = cli.with_settings(
        stripe_secret_key="sk_test_abcdefghijklmnop1234",
        database_url="postgresql://app:hunter22@db.example.com/codex",
    )
    result = configured("config", "--json")
    data = json.loads(result.stdout)
    assert "hunter22" not in result.stdout and "abcdefghijklmnop" not in result.stdout
    assert data["settings"]["STRIPE_SECRET_KEY"]["value"].endswith("1234")
    assert "object store" in data["embedded"] and "database" not in data["embedded"]


def test_version() -> None:
    from typer.testing import CliRunner

    from codex_cli import __version__
    from codex_cli.app import app

    assert CliRunner().invoke(app, ["--version"]).stdout.strip() == f"codex {__version__}"


def test_installed_entry_point_uses_the_embedded_default(tmp_path: Path) -> None:
    """No DATABASE_URL: the real `codex` script starts an embedded PostgreSQL under CODEX_HOME (as
    root: outside it, see services.adapters.db.embedded_data_dir)."""
    import shutil

    from services.adapters.db import embedded_data_dir

    env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
    env["CODEX_HOME"] = str(tmp_path / "home")
    pgdata = embedded_data_dir(tmp_path / "home")
    codex = [sys.executable, "-m", "codex_cli"]
    try:
        migrate = subprocess.run(
            [*codex, "db", "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "applied 0001" in migrate.stdout
        status = subprocess.run(
            [*codex, "db", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        data = json.loads(status.stdout)
        assert data["embedded"] is True and data["up_to_date"] is True
        assert (pgdata / "PG_VERSION").exists()
        stop = subprocess.run([*codex, "db", "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0 and "Stopped the embedded PostgreSQL" in stop.stdout
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        subprocess.run([*codex, "db", "stop"], env=env, capture_output=True, timeout=60)
        if os.geteuid() == 0:  # the data lives outside CODEX_HOME as root (services.adapters.db)
            shutil.rmtree(pgdata.parent, ignore_errors=True)
