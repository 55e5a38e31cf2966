"""Finding organizations and users the way operators name them: by slug, email or id."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from services.core.errors import NotFound, PermissionDenied, ValidationError
from services.core.models import Organization, User, UserRole


def parse_uuid(value: str, what: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError):
        raise ValidationError(f"{value!r} is not a {what} (expected a UUID).") from None


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def resolve_org(session: Any, ref: str) -> Organization:
    """An organization by slug or id; NotFound names what was asked for."""
    as_id = _maybe_uuid(ref)
    condition = Organization.id == as_id if as_id else Organization.slug == ref.strip().lower()
    org = session.scalars(select(Organization).where(condition)).first()
    if org is None:
        raise NotFound(f"Organization {ref!r} not found.")
    return org


def find_user_by_email(session: Any, email: str) -> User | None:
    return session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).first()


def resolve_user(session: Any, ref: str) -> User:
    """A user by email or id."""
    as_id = _maybe_uuid(ref)
    user = session.get(User, as_id) if as_id else find_user_by_email(session, ref)
    if user is None:
        from services.core.masking import mask_email

        shown = ref if as_id else mask_email(ref)
        raise NotFound(f"User {shown} not found.")
    return user


def resolve_operator(session: Any, email: str | None) -> User:
    """The operator behind an audited action: `--by` or CODEX_OPERATOR_EMAIL, a platform_owner user."""
    from services.core.masking import mask_email

    if not email:
        raise ValidationError(
            "Say who you are: pass --by EMAIL or set CODEX_OPERATOR_EMAIL (a platform owner)."
        )
    user = find_user_by_email(session, email)
    if user is None or user.role != UserRole.platform_owner:
        raise PermissionDenied(f"Operator {mask_email(email)} is not a platform_owner user.")
    return user
