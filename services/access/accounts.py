"""Operator-managed user accounts: create a customer (or an owner) and change a user's role, audited."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from services.access.entitlements import shown_email
from services.core.audit import record_audit
from services.core.errors import Conflict, ValidationError
from services.core.lookup import find_user_by_email, resolve_operator, resolve_user
from services.core.models import UserRole
from services.core.patterns import EMAIL_PATTERN, ONE_LINE_FORBIDDEN

if TYPE_CHECKING:
    from services.bootstrap import Container

NAME_MAX = 255
EMAIL_MAX = 254  # RFC 5321's limit on a forward path


@dataclass(frozen=True)
class AccountResult:
    id: str
    email: str  # as the operator typed it: they just gave it
    name: str
    role: str
    email_verified: bool
    changed: bool = True
    previous_role: str | None = None


def _role(value: str) -> UserRole:
    roles = [r.value for r in UserRole]
    text = (value or "").strip().lower()
    if text not in roles:
        raise ValidationError(f"Unknown role {value!r}; choose one of {', '.join(roles)}.")
    return UserRole(text)


def check_email(value: str) -> str:
    email = (value or "").strip()
    if len(email) > EMAIL_MAX or not re.fullmatch(EMAIL_PATTERN, email):
        raise ValidationError(f"{email[:80]!r} is not a valid email address.")
    return email


def check_name(value: str, what: str = "Name") -> str:
    """A one-line display name: trimmed, 1 to NAME_MAX characters, no control or bidi characters."""
    name = (value or "").strip()
    if re.search(ONE_LINE_FORBIDDEN, name):
        raise ValidationError(f"{what} must not contain control characters or bidi overrides.")
    if not 1 <= len(name) <= NAME_MAX:
        raise ValidationError(f"{what} must be 1 to {NAME_MAX} characters (got {len(name)}).")
    return name


def create_user(
    container: Container,
    email: str,
    name: str,
    role: str = "customer",
    verified: bool = False,
    by: str | None = None,
) -> AccountResult:
    """Create a user (a customer unless `role` says otherwise); an existing email is a Conflict."""
    email = check_email(email)
    name = check_name(name)
    user_role = _role(role)
    with container.uow() as uow:
        db = uow.session
        operator = resolve_operator(db, container.settings.operator_email(by))
        if find_user_by_email(db, email) is not None:
            raise Conflict(f"A user with email {email} already exists.")
        from services.core.models import User

        user = User(email=email, name=name, role=user_role, email_verified=verified)
        db.add(user)
        try:
            db.flush()
        except IntegrityError:
            # Another operator created the same address between our check and the insert.
            raise Conflict(f"A user with email {email} already exists.") from None
        record_audit(
            db,
            operator,
            "user.create",
            "user",
            user.id,
            {"role": user_role.value, "email_verified": verified},
        )
        uow.commit()
        return AccountResult(str(user.id), email, name, user_role.value, verified)


def set_role(container: Container, user_ref: str, role: str, by: str | None = None) -> AccountResult:
    """Change a user's role (by email or id); the same role again changes nothing and writes no audit row.

    The last platform owner cannot be demoted: nobody could run operator actions afterwards."""
    new_role = _role(role)
    with container.uow() as uow:
        db = uow.session
        operator = resolve_operator(db, container.settings.operator_email(by))
        user = resolve_user(db, user_ref)
        db.refresh(user, with_for_update=True)
        previous = UserRole(user.role)
        shown = shown_email(user.email, user_ref) if user.role == UserRole.customer else user.email
        if previous == new_role:
            return AccountResult(
                str(user.id), shown, user.name, new_role.value, user.email_verified, changed=False
            )
        if previous == UserRole.platform_owner:
            from sqlalchemy import func, select

            from services.core.models import User

            owners = db.scalar(
                select(func.count()).select_from(User).where(User.role == UserRole.platform_owner)
            )
            if (owners or 0) <= 1:
                raise Conflict(f"{shown} is the last platform owner; promote someone else first.")
        user.role = new_role
        record_audit(
            db, operator, "user.set_role", "user", user.id, {"from": previous.value, "to": new_role.value}
        )
        uow.commit()
        return AccountResult(
            str(user.id), shown, user.name, new_role.value, user.email_verified, previous_role=previous.value
        )
