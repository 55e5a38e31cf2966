"""Read-only operator views: purchases and users, listed newest first with keyset pagination.

Customer emails are masked in every row, except an address the operator typed themselves
(`--customer EMAIL`, `users show EMAIL`). Pages are cut on (created_at, id), so rows inserted while an
operator pages through never shift or repeat what they already saw.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import aliased

from services.access import has_access, purchase_state, shown_email
from services.durations import parse_duration
from services.errors import NotFound, ValidationError
from services.lookup import parse_uuid, resolve_org, resolve_user
from services.masking import mask_email
from services.models import (
    Content,
    ContentPurchase,
    Organization,
    OrganizationMember,
    PurchaseStatus,
    User,
    UserRole,
)
from services.money import format_money

MAX_LIMIT = 500
PURCHASE_STATES = ("pending", "completed", "failed", "refunded")


# ------------------------------------------------------------------------------------------ paging


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationError(
            f"Invalid cursor {cursor!r}: pass the value printed as next_cursor by the previous page."
        ) from None


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"--limit must be between 1 and {MAX_LIMIT}.")
    return limit


def _page(query: Any, created_col: Any, id_col: Any, limit: int, cursor: str | None) -> Any:
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(created_col, id_col) < tuple_(at, row_id))
    return query.order_by(created_col.desc(), id_col.desc()).limit(_check_limit(limit) + 1)


# --------------------------------------------------------------------------------------- purchases


@dataclass(frozen=True)
class PurchaseRow:
    id: uuid.UUID
    created_at: datetime
    purchased_at: datetime | None
    status: str
    customer: str
    customer_id: uuid.UUID
    content_id: uuid.UUID
    title: str
    organization: str
    price_paid_cents: int
    currency: str
    price: str
    refunded_at: datetime | None


@dataclass(frozen=True)
class PurchasePage:
    items: list[PurchaseRow]
    next_cursor: str | None
    limit: int


def list_purchases(
    container: Any,
    status: str | None = None,
    customer: str | None = None,
    content: str | None = None,
    org: str | None = None,
    since: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> PurchasePage:
    """Purchases newest first, filtered; `status` is pending, completed (not refunded), failed or refunded."""
    if status is not None and status not in PURCHASE_STATES:
        raise ValidationError(f"Unknown status {status!r}; choose one of {', '.join(PURCHASE_STATES)}.")
    with container.uow() as uow:
        session = uow.session
        query = (
            select(ContentPurchase, User.email, Content.title, Organization.slug)
            .join(User, User.id == ContentPurchase.customer_id)
            .join(Content, Content.id == ContentPurchase.content_id)
            .join(Organization, Organization.id == ContentPurchase.organization_id)
        )
        if status == "refunded":
            query = query.where(ContentPurchase.refunded_at.is_not(None))
        elif status is not None:
            query = query.where(
                ContentPurchase.status == PurchaseStatus(status), ContentPurchase.refunded_at.is_(None)
            )
        if customer:
            query = query.where(ContentPurchase.customer_id == resolve_user(session, customer).id)
        if content:
            query = query.where(ContentPurchase.content_id == parse_uuid(content, "content id"))
        if org:
            query = query.where(ContentPurchase.organization_id == resolve_org(session, org).id)
        if since:
            query = query.where(ContentPurchase.created_at >= datetime.now(UTC) - parse_duration(since))
        query = _page(query, ContentPurchase.created_at, ContentPurchase.id, limit, cursor)
        rows = session.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            PurchaseRow(
                id=p.id,
                created_at=p.created_at,
                purchased_at=p.purchased_at,
                status=purchase_state(p),
                customer=shown_email(email, customer),
                customer_id=p.customer_id,
                content_id=p.content_id,
                title=title,
                organization=slug,
                price_paid_cents=p.price_paid_cents,
                currency=p.currency,
                price=format_money(p.price_paid_cents, p.currency),
                refunded_at=p.refunded_at,
            )
            for p, email, title, slug in rows
        ]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more and items else None
        return PurchasePage(items=items, next_cursor=next_cursor, limit=limit)


@dataclass(frozen=True)
class PurchaseDetail:
    id: uuid.UUID
    status: str
    has_access: bool
    customer: str
    customer_id: uuid.UUID
    content_id: uuid.UUID
    title: str
    organization: str
    organization_id: uuid.UUID
    price_paid_cents: int
    amount_received_cents: int | None
    currency: str
    price: str
    complimentary: bool
    stripe_checkout_session_id: str | None
    stripe_payment_intent_id: str | None
    created_at: datetime
    purchased_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str | None
    stripe_refund_id: str | None
    refunded_by: str | None


def show_purchase(container: Any, purchase_ref: str) -> PurchaseDetail:
    """One purchase with its customer (masked), content, Stripe references and refund."""
    purchase_id = parse_uuid(purchase_ref, "purchase id")
    refunder = aliased(User)
    with container.uow() as uow:
        session = uow.session
        row = session.execute(
            select(ContentPurchase, User.email, Content.title, Organization.slug, refunder.email)
            .join(User, User.id == ContentPurchase.customer_id)
            .join(Content, Content.id == ContentPurchase.content_id)
            .join(Organization, Organization.id == ContentPurchase.organization_id)
            .outerjoin(refunder, refunder.id == ContentPurchase.refunded_by)
            .where(ContentPurchase.id == purchase_id)
        ).first()
        if row is None:
            raise NotFound(f"Purchase {purchase_id} not found.")
        p, email, title, slug, refunded_by = row
        return PurchaseDetail(
            id=p.id,
            status=purchase_state(p),
            has_access=has_access(session, p.customer_id, p.content_id),
            customer=mask_email(email),
            customer_id=p.customer_id,
            content_id=p.content_id,
            title=title,
            organization=slug,
            organization_id=p.organization_id,
            price_paid_cents=p.price_paid_cents,
            amount_received_cents=p.amount_received_cents,
            currency=p.currency,
            price=format_money(p.price_paid_cents, p.currency),
            complimentary=p.price_paid_cents == 0 and not p.stripe_checkout_session_id,
            stripe_checkout_session_id=p.stripe_checkout_session_id,
            stripe_payment_intent_id=p.stripe_payment_intent_id,
            created_at=p.created_at,
            purchased_at=p.purchased_at,
            refunded_at=p.refunded_at,
            refund_reason=p.refund_reason,
            stripe_refund_id=p.stripe_refund_id,
            # Operators who refund are platform owners, not customers: their address is not masked.
            refunded_by=refunded_by,
        )


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
    container: Any,
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
        query = _page(query, User.created_at, User.id, limit, cursor)
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


def show_user(container: Any, ref: str) -> UserDetail:
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
