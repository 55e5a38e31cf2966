"""`codex doctor`: one line per check, local and unconfigured parts are not failures unless --strict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from tests.conftest import CODEX_ENV
from tests.fixtures.stripe import STRIPE_SECRET_KEY

CHECKS = ["database", "media bucket", "assets bucket", "stripe", "email", "webhook secret", "app url"]
CHECKS += ["email queue"]  # only once the database could be read


def _statuses(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}


def _configured(cli, *settings_objects, **extra):  # type: ignore[no-untyped-def]
    """A runner with every field the given settings changed from the test's own settings."""
    changes = {}
    for configured in settings_objects:
        for f in fields(configured):
            if getattr(configured, f.name) != getattr(cli.settings, f.name):
                changes[f.name] = getattr(configured, f.name)
    changes.update(extra)
    return cli.with_settings(**changes)


def test_doctor_on_the_embedded_defaults_reports_local_parts_and_passes(tmp_path: Path) -> None:
    import shutil

    from services.adapters.db import embedded_data_dir

    """The real `codex` entry point with no configuration at all: embedded PostgreSQL, folders."""
    env = {k: v for k, v in os.environ.items() if k not in CODEX_ENV}
    env["CODEX_HOME"] = str(tmp_path / "home")
    codex = [sys.executable, "-m", "codex_cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*codex, *args], env=env, capture_output=True, text=True, timeout=180)

    try:
        fresh = run("doctor", "--json")
        assert fresh.returncode == 1, fresh.stderr
        database = json.loads(fresh.stdout)["checks"][0]
        assert database["status"] == "failed" and "codex db migrate" in database["detail"]

        assert run("db", "migrate").returncode == 0
        result = run("doctor")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert [line[15:31].strip() for line in lines[:8]] == CHECKS
        assert lines[-1] == "All checks passed."
        data = json.loads(run("doctor", "--json").stdout)
        statuses = {c["name"]: c["status"] for c in data["checks"]}
        assert statuses == {
            "database": "local",
            "media bucket": "local",
            "assets bucket": "local",
            "stripe": "not configured",
            "email": "local",
            "webhook secret": "not configured",
            "app url": "local",
            "email queue": "ok",
        }
        assert data["ok"] is True and set(data["embedded"]) == {
            "database",
            "object store",
            "email",
            "payments",
        }
        assert (
            "up to date" in data["checks"][0]["detail"]
            and str(embedded_data_dir(tmp_path / "home")) in data["checks"][0]["detail"]
        )

        strict = run("doctor", "--strict")
        assert strict.returncode == 1 and "7 check(s) failed" in strict.stderr
    finally:
        run("db", "stop")
        if os.geteuid() == 0:  # the data lives outside CODEX_HOME as root (services.adapters.db)
            shutil.rmtree(embedded_data_dir(tmp_path / "home").parent, ignore_errors=True)


def test_doctor_with_only_a_database_configured(cli) -> None:
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    statuses = _statuses(result)
    assert statuses["database"] == "ok" and statuses["media bucket"] == "local"
    assert statuses["stripe"] == "not configured"


def test_doctor_with_every_part_configured_passes_strict(
    cli, s3_settings, s3_client, stripe_settings, resend_settings, stripe_standin
) -> None:
    s3_client.create_bucket(Bucket=s3_settings.r2_assets_bucket)
    try:
        full = _configured(
            cli, s3_settings, stripe_settings, resend_settings, app_url="https://codex.example"
        )
        result = full("doctor", "--strict")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == "All checks passed (strict)."
        statuses = _statuses(full("doctor", "--strict", "--json"))
        assert set(statuses.values()) == {"ok"}
        assert stripe_standin.count("GET", "/v1/balance") >= 1
        for secret in (STRIPE_SECRET_KEY, "testing", resend_settings.resend_api_key):
            assert secret not in result.output
    finally:
        s3_client.delete_bucket(Bucket=s3_settings.r2_assets_bucket)


def test_each_broken_part_fails_on_its_own_line_and_the_others_still_run(
    cli, s3_settings, stripe_settings, stripe_standin
) -> None:
    broken = _configured(
        cli,
        s3_settings,
        stripe_settings,
        database_url="postgresql://app:hunter22pw@127.0.0.1:1/codex",
        r2_media_bucket="no-such-bucket",
        stripe_secret_key="sk_test_wrongkey000000000000",
        stripe_webhook_secret_payment="not-a-signing-secret",
        app_url="localhost:5173",
    )
    result = broken("doctor")
    assert result.exit_code == 1
    lines = {line[15:31].strip(): line for line in result.stdout.splitlines()}
    assert list(lines) == CHECKS[:-1]  # no email-queue line: the database line says it is unreachable
    assert (
        lines["database"].startswith("failed")
        and "Cannot connect to the database at 127.0.0.1:1" in lines["database"]
    )
    assert lines["media bucket"].startswith("failed") and "no-such-bucket" in lines["media bucket"]
    assert lines["stripe"].startswith("failed")
    assert lines["email"].startswith("local")
    assert lines["webhook secret"].startswith("failed") and "whsec_" in lines["webhook secret"]
    assert lines["app url"].startswith("failed") and "not an http(s) URL" in lines["app url"]
    assert "hunter22pw" not in result.output and "wrongkey000000000000" not in result.output
    assert (
        "check(s) failed: database, media bucket, assets bucket, stripe, webhook secret, app url"
        in result.stderr
    )
    data = json.loads(broken("doctor", "--json").stdout)
    assert data["ok"] is False and "email" not in data["failures"]


def test_pending_migrations_fail_the_database_check(cli) -> None:
    assert cli("db", "downgrade", "base", "--yes").exit_code == 0
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    database = json.loads(result.stdout)["checks"][0]
    assert database["status"] == "failed" and "pending" in database["detail"]
    assert "codex db migrate" in database["detail"]


def test_dead_or_long_pending_mail_fails_the_email_queue_check(cli, session) -> None:
    from datetime import UTC, datetime, timedelta

    from services.core.models import EmailOutbox, OutboxStatus

    def queue_line() -> tuple[int, str]:
        result = cli("doctor", "--json")
        check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "email queue")
        return result.exit_code, f"{check['status']}: {check['detail']}"

    assert queue_line() == (0, "ok: no dead email; 0 pending")
    row = EmailOutbox(
        template="purchase-receipt",
        recipient="jane@example.com",
        idempotency_key="doctor-test-1",
        next_attempt_at=datetime.now(UTC) - timedelta(hours=2),
    )
    session.add(row)
    session.commit()
    code, line = queue_line()
    assert code == 1 and line.startswith("failed: 1 email(s) pending for over 1 hour(s)")
    assert "codex email drain" in line
    row.status = OutboxStatus.dead
    session.commit()
    code, line = queue_line()
    assert code == 1 and "1 email(s) dead in the outbox" in line and "retry --all-dead" in line
    assert "jane@example.com" not in line
