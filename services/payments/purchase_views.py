"""Read-only operator views of purchases (`codex purchases`), newest first with keyset pagination.

Customer emails are masked in every row, except an address the operator typed themselves (`--customer EMAIL`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import aliased

from services.access.entitlements import has_access, purchase_state, shown_email
from services.core.durations import parse_duration
from services.core.errors import NotFound, ValidationError
from services.core.lookup import parse_uuid, resolve_content, resolve_org, resolve_user
from services.core.masking import mask_email
from services.core.models import (
    Content,
    ContentPurchase,
    Organization,
    PurchaseStatus,
    User,
)
from services.core.money import format_money
from services.core.paging import encode_cursor, page_query

if TYPE_CHECKING:
    from services.bootstrap import Container

PURCHASE_STATES = ("pending", "completed", "failed", "refunded")


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
    container: Container,
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
            query = query.where(
                ContentPurchase.content_id == resolve_content(session, content, org, False).id
            )
        if org:
            query = query.where(ContentPurchase.organization_id == resolve_org(session, org).id)
        if since:
            query = query.where(ContentPurchase.created_at >= datetime.now(UTC) - parse_duration(since))
        query = page_query(query, ContentPurchase.created_at, ContentPurchase.id, limit, cursor)
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


def show_purchase(container: Container, purchase_ref: str) -> PurchaseDetail:
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
