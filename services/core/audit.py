"""The audit log: one row per operator action, written in the same transaction as the action."""

from __future__ import annotations

from typing import Any

from services.core.models import AuditLog, User


def record_audit(
    session: Any,
    actor: User | str,
    action: str,
    target_type: str | None = None,
    target_id: object = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the session (the caller commits). `actor` is a user or a system name."""
    row = AuditLog(
        actor_id=actor.id if isinstance(actor, User) else None,
        actor=actor.email if isinstance(actor, User) else str(actor),
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        details=details or {},
    )
    session.add(row)
    return row
