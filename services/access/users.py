"""Read-only operator views of users (`codex users`), newest first with keyset pagination.

Customer emails are masked, except an address the operator typed themselves (`users show EMAIL`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from services.access.entitlements import shown_email
from services.core.errors import ValidationError
from services.core.lookup import resolve_user
from services.core.models import (
    ContentPurchase,
    Organization,
    OrganizationMember,
    PurchaseStatus,
    User,
    UserRole,
)
from services.core.money import format_money
from services.core.paging import encode_cursor, page_query
from services.payments.purchase_views import PURCHASE_STATES

if TYPE_CHECKING:
    from services.bootstrap import Container

# ------------------------------------------------------------------------------------------- users


@dataclass(frozen=True)
class UserRow:
    id: uuid.UUID
    email: str
    name: str
    role: str
    email_verified: bool
    created_at: datetime
    purchases: int


@dataclass(frozen=True)
class UserPage:
    items: list[UserRow]
    next_cursor: str | None
    limit: int


def _show_user_email(user_email: str, role: Any, typed: str | None) -> str:
    # Platform owners run this tool; only customers' addresses are private.
    if role == UserRole.platform_owner:
        return user_email
    return shown_email(user_email, typed)


def _live_purchase_counts() -> Any:
    return (
        select(ContentPurchase.customer_id, func.count().label("n"))
        .where(ContentPurchase.status == PurchaseStatus.completed, ContentPurchase.refunded_at.is_(None))
        .group_by(ContentPurchase.customer_id)
        .subquery()
    )


def list_users(
    container: Container,
    role: str | None = None,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> UserPage:
    """Users newest first; `search` matches part of the name or email, case-insensitively."""
    roles = [r.value for r in UserRole]
    if role is not None and role not in roles:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(roles)}.")
    counts = _live_purchase_counts()
    with container.uow() as uow:
        query = select(User, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.customer_id == User.id)
        if role is not None:
            query = query.where(User.role == UserRole(role))
        if search and search.strip():
            pattern = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(User.email.ilike(pattern), User.name.ilike(pattern)))
        query = page_query(query, User.created_at, User.id, limit, cursor)
        rows = uow.session.execute(query).all()
        more = len(rows) > limit
        items = [
            UserRow(
                id=u.id,
                email=_show_user_email(u.email, u.role, None),
                name=u.name,
                role=UserRole(u.role).value,
                email_verified=u.email_verified,
                created_at=u.created_at,
                purchases=int(n),
            )
            for u, n in rows[:limit]
        ]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more and items else None
        return UserPage(items=items, next_cursor=next_cursor, limit=limit)


@dataclass(frozen=True)
class Membership:
    organization: str
    organization_id: uuid.UUID
    role: str


@dataclass(frozen=True)
class UserDetail:
    id: uuid.UUID
    email: str
    name: str
    role: str
    email_verified: bool
    created_at: datetime
    memberships: list[Membership] = field(default_factory=list)
    purchases: dict[str, int] = field(default_factory=dict)
    spent: list[str] = field(default_factory=list)


def show_user(container: Container, ref: str) -> UserDetail:
    """A user by email or id: role, memberships and a summary of their purchases."""
    with container.uow() as uow:
        session = uow.session
        user = resolve_user(session, ref)
        memberships = [
            Membership(organization=slug, organization_id=org_id, role=str(role.value))
            for slug, org_id, role in session.execute(
                select(Organization.slug, Organization.id, OrganizationMember.role)
                .join(OrganizationMember, OrganizationMember.organization_id == Organization.id)
                .where(OrganizationMember.user_id == user.id)
                .order_by(Organization.slug)
            )
        ]
        refunded = ContentPurchase.refunded_at.is_not(None)
        counts: dict[str, int] = dict.fromkeys(PURCHASE_STATES, 0)
        spent: list[str] = []
        for status, is_refunded, currency, n, cents in session.execute(
            select(
                ContentPurchase.status,
                refunded,
                ContentPurchase.currency,
                func.count(),
                func.sum(ContentPurchase.price_paid_cents),
            )
            .where(ContentPurchase.customer_id == user.id)
            .group_by(ContentPurchase.status, refunded, ContentPurchase.currency)
            .order_by(ContentPurchase.currency)
        ):
            key = "refunded" if is_refunded else PurchaseStatus(status).value
            counts[key] += int(n)
            if key == "completed":
                spent.append(format_money(int(cents), currency))
        return UserDetail(
            id=user.id,
            email=_show_user_email(user.email, user.role, ref),
            name=user.name,
            role=UserRole(user.role).value,
            email_verified=user.email_verified,
            created_at=user.created_at,
            memberships=memberships,
            purchases=counts,
            spent=spent,
        )
