"""Finding organizations and users the way operators name them: by slug, email or id."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from services.core.errors import NotFound, PermissionDenied, ValidationError
from services.core.models import Content, Organization, User, UserRole


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
        # The operator typed this address; echo it as typed (masking is for listings and logs).
        raise NotFound(f"User {ref.strip()} not found.")
    return user


def resolve_operator(session: Any, email: str | None) -> User:
    """The operator behind an audited action: `--by` or CODEX_OPERATOR_EMAIL, a platform_owner user."""
    if not email:
        raise ValidationError(
            "Say who you are: set CODEX_OPERATOR_EMAIL or give the email of a platform owner.", field="by"
        )
    user = find_user_by_email(session, email)
    if user is None or user.role != UserRole.platform_owner:
        raise PermissionDenied(f"Operator {email.strip()} is not a platform_owner user.")
    return user


def resolve_content(session: Any, ref: str, org_ref: str | None = None, live_only: bool = True) -> Content:
    """Content by id, or by slug: within `org_ref` when given, else the one organization that has it.

    A slug two organizations use needs the organization (a ValidationError about `org`)."""
    text = (ref or "").strip()
    if not text:
        raise ValidationError("Give a content id or slug.", field="content")
    org = resolve_org(session, org_ref) if org_ref else None
    as_id = _maybe_uuid(text)
    query = select(Content).where(Content.id == as_id if as_id else Content.slug == text.lower())
    if org is not None:
        query = query.where(Content.organization_id == org.id)
    if live_only:
        query = query.where(Content.deleted_at.is_(None))
    rows = session.scalars(query.limit(2)).all()
    if not rows:
        where = f" in organization {org.slug}" if org is not None else ""
        raise NotFound(f"Content {text} not found{where}.")
    if len(rows) > 1:
        raise ValidationError(
            f"Content slug {text!r} is used by more than one organization: name the organization.",
            field="org",
        )
    return rows[0]


def content_id_for(container: Any, ref: str, org_ref: str | None = None) -> uuid.UUID:
    """The id of the content an operator named (id, or slug with an optional organization)."""
    as_id = _maybe_uuid((ref or "").strip())
    if as_id is not None and not org_ref:
        return as_id
    with container.uow() as uow:
        return resolve_content(uow.session, ref, org_ref).id
