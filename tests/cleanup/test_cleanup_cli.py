"""`codex cleanup orphans` and `codex cleanup sessions` as an operator runs them: output, exit codes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.core import models as m
from services.core import r2keys
from tests import factories as f


def orphan_key() -> str:
    return r2keys.media_original(uuid.uuid4(), uuid.uuid4(), "mp4")


def test_orphans_with_yes_deletes_and_reports(s3_cli, bucket) -> None:
    bucket.put(orphan_key(), size=2048)
    kept = bucket.put("exports/report.csv")
    result = s3_cli("cleanup", "orphans", "--older-than", "0s", "--yes")
    assert result.exit_code == 0, result.output
    assert "Deleted 1 orphaned objects (2 KiB)" in result.stdout
    assert "1 outside the media/resource layout" in result.stdout
    assert bucket.listed() == {kept}


def test_orphans_json_is_one_document(s3_cli, bucket) -> None:
    key = bucket.put(orphan_key(), size=10)
    result = s3_cli("cleanup", "orphans", "--older-than", "0s", "--yes", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["orphans_deleted"] == 1 and data["bytes_reclaimed"] == 10
    assert data["sample"] == [{"kind": "orphan", "key": key, "size": 10}]
    assert data["locked_out"] is False and data["dry_run"] is False


def test_default_threshold_keeps_todays_objects(s3_cli, bucket) -> None:
    key = bucket.put(orphan_key())
    result = s3_cli("cleanup", "orphans", "--yes")
    assert result.exit_code == 0 and "1 newer than 24h" in result.stdout
    assert bucket.listed() == {key}


def test_dry_run_lists_each_candidate_and_changes_nothing(s3_cli, bucket) -> None:
    key = bucket.put(orphan_key(), size=3)
    result = s3_cli("cleanup", "orphans", "--older-than", "0s", "--dry-run")
    assert result.exit_code == 0
    assert f"would delete orphan      {key} (3 B)" in result.stdout
    assert "Dry run: would delete 1 orphaned objects" in result.stdout
    assert bucket.listed() == {key}


def test_without_yes_off_a_terminal_it_refuses_before_scanning(s3_cli, bucket) -> None:
    key = bucket.put(orphan_key())
    result = s3_cli("cleanup", "orphans", "--older-than", "0s")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert bucket.listed() == {key}


def test_invalid_duration_is_a_usage_error(s3_cli) -> None:
    result = s3_cli("cleanup", "orphans", "--older-than", "yesterday", "--yes")
    assert result.exit_code == 2 and "Invalid duration 'yesterday'" in result.stderr


def test_unreachable_bucket_exits_1_with_one_sentence(s3_cli) -> None:
    missing = s3_cli.with_settings(r2_media_bucket="no-such-bucket")
    result = missing("cleanup", "orphans", "--older-than", "0s", "--yes")
    assert result.exit_code == 1
    assert "Bucket 'no-such-bucket' does not exist" in result.stderr and "Traceback" not in result.output


def _tokens(session, user, expired: int, live: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for i in range(expired + live):
        when = now - timedelta(hours=1) if i < expired else now + timedelta(days=7)
        session.add(m.Session(user_id=user.id, token=f"s-{uuid.uuid4()}", expires_at=when))
        session.add(m.VerificationToken(user_id=user.id, token=f"v-{uuid.uuid4()}", expires_at=when))
    session.commit()


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_sessions_deletes_only_expired_sessions_and_tokens(cli, session) -> None:
    _tokens(session, f.make_user(session), expired=3, live=2)
    result = cli("cleanup", "sessions", "--yes")
    assert result.exit_code == 0, result.output
    assert "Deleted 3 expired sessions and 3 expired verification tokens." in result.stdout
    assert _count(session, m.Session) == 2 and _count(session, m.VerificationToken) == 2
    audit = session.scalars(select(m.AuditLog).where(m.AuditLog.action == "cleanup.sessions")).one()
    assert audit.details["sessions_deleted"] == 3 and audit.actor == "codex cleanup"


def test_sessions_dry_run_counts_and_deletes_nothing(cli, session) -> None:
    _tokens(session, f.make_user(session), expired=2, live=1)
    result = cli("cleanup", "sessions", "--dry-run", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["expired_sessions"] == 2 and data["expired_verification_tokens"] == 2
    assert data["sessions_deleted"] == 0
    assert _count(session, m.Session) == 3


@pytest.mark.commits
def test_sessions_in_batches_deletes_a_backlog_larger_than_a_batch(container, session) -> None:
    from services.maintenance.sessions import cleanup_sessions

    _tokens(session, f.make_user(session), expired=7, live=1)
    result = cleanup_sessions(container, batch_size=3)
    assert result.sessions_deleted == 7 and result.verification_tokens_deleted == 7
    assert _count(session, m.Session) == 1


def test_sessions_without_yes_off_a_terminal_is_refused(cli, session) -> None:
    _tokens(session, f.make_user(session), expired=1, live=0)
    result = cli("cleanup", "sessions")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert _count(session, m.Session) == 1
