"""Cleanup of expired sessions and verification tokens (`codex cleanup sessions`), in batches, for cron."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.adapters.locks import LockHolder, run_lock
from services.maintenance.orphans import ACTOR, audit_run

if TYPE_CHECKING:
    from services.bootstrap import Container

SESSIONS_LOCK = "codex-cleanup-sessions"

SESSION_DELETE_BATCH = 10_000

# ------------------------------------------------------------------------------------------ sessions


@dataclass
class SessionCleanupResult:
    dry_run: bool
    now: datetime
    locked_out: bool = False
    lock_holder: LockHolder | None = None
    lock_stale: bool = False  # held past CODEX_LOCK_MAX_AGE: a person should look
    aborted: bool = False
    expired_sessions: int = 0
    expired_verification_tokens: int = 0
    sessions_deleted: int = 0
    verification_tokens_deleted: int = 0


def cleanup_sessions(
    container: Container,
    *,
    dry_run: bool = False,
    confirm: Callable[[SessionCleanupResult], bool] | None = None,
    now: datetime | None = None,
    batch_size: int = SESSION_DELETE_BATCH,
    actor: str = ACTOR,
) -> SessionCleanupResult:
    """Delete sessions and verification tokens whose expiry has passed, in batches of `batch_size` rows.

    Each batch is its own short transaction, so a large backlog never holds locks for long.
    """
    from sqlalchemy import text

    now = now or datetime.now(UTC)
    result = SessionCleanupResult(dry_run=dry_run, now=now)

    def count() -> None:
        with container.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM sessions WHERE expires_at < :now),"
                    " (SELECT count(*) FROM verification_tokens WHERE expires_at < :now)"
                ),
                {"now": now},
            ).one()
        result.expired_sessions, result.expired_verification_tokens = int(row[0]), int(row[1])

    if dry_run:
        count()
        return result
    with run_lock(container.engine, SESSIONS_LOCK, container.settings.lock_max_age()) as lock:
        if not lock.acquired:
            result.locked_out, result.lock_holder, result.lock_stale = True, lock.holder, lock.stale
            return result
        count()
        if confirm is not None and not confirm(result):
            result.aborted = True
            return result
        result.sessions_deleted = _delete_expired(container.engine, "sessions", now, batch_size)
        result.verification_tokens_deleted = _delete_expired(
            container.engine, "verification_tokens", now, batch_size
        )
        audit_run(
            container,
            actor,
            "cleanup.sessions",
            None,
            {
                "now": now.isoformat(),
                "sessions_deleted": result.sessions_deleted,
                "verification_tokens_deleted": result.verification_tokens_deleted,
            },
        )
    return result


def _delete_expired(engine: Any, table: str, now: datetime, batch_size: int) -> int:
    from sqlalchemy import text

    statement = text(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE expires_at < :now"
        " LIMIT :n FOR UPDATE SKIP LOCKED)"
    )
    total = 0
    while True:
        with engine.begin() as conn:
            deleted = conn.execute(statement, {"now": now, "n": batch_size}).rowcount
        total += deleted
        if deleted < batch_size:
            return total
