"""Factories that insert real rows (flushed, not committed): users, orgs, media, content, purchases."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from services.core import models as m

_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


def _save(session: Any, row: Any) -> Any:
    session.add(row)
    session.flush()
    return row


def make_user(
    session: Any,
    email: str | None = None,
    name: str | None = None,
    role: m.UserRole = m.UserRole.customer,
    **kw: Any,
) -> m.User:
    n = _n()
    return _save(
        session,
        m.User(
            email=email or f"user{n}@example.com",
            name=name or f"User {n}",
            role=role,
            email_verified=kw.pop("email_verified", True),
            **kw,
        ),
    )


def make_owner(session: Any, email: str | None = None, **kw: Any) -> m.User:
    return make_user(session, email=email, role=m.UserRole.platform_owner, **kw)


def make_org(session: Any, slug: str | None = None, name: str | None = None, **kw: Any) -> m.Organization:
    n = _n()
    return _save(session, m.Organization(slug=slug or f"org-{n}", name=name or f"Org {n}", **kw))


def make_membership(
    session: Any, org: m.Organization, user: m.User, role: m.MemberRole = m.MemberRole.owner
) -> m.OrganizationMember:
    return _save(session, m.OrganizationMember(organization_id=org.id, user_id=user.id, role=role))


def make_category(session: Any, slug: str | None = None, name: str | None = None, **kw: Any) -> m.Category:
    n = _n()
    return _save(session, m.Category(slug=slug or f"category-{n}", name=name or f"Category {n}", **kw))


def make_media(
    session: Any,
    org: m.Organization,
    status: m.MediaStatus = m.MediaStatus.ready,
    type: m.MediaType = m.MediaType.video,
    **kw: Any,
) -> m.MediaItem:
    media_id = kw.pop("id", None) or uuid.uuid4()
    ext = "mp4" if type == m.MediaType.video else "mp3"
    return _save(
        session,
        m.MediaItem(
            id=media_id,
            organization_id=org.id,
            type=type,
            status=status,
            r2_key=kw.pop("r2_key", f"{org.id}/originals/{media_id}/original.{ext}"),
            filename=kw.pop("filename", f"file.{ext}"),
            mime_type=kw.pop("mime_type", "video/mp4" if type == m.MediaType.video else "audio/mpeg"),
            file_size_bytes=kw.pop("file_size_bytes", 1024),
            **kw,
        ),
    )


def make_content(
    session: Any,
    org: m.Organization,
    media: m.MediaItem | None = None,
    status: m.ContentStatus = m.ContentStatus.published,
    price_cents: int = 999,
    **kw: Any,
) -> m.Content:
    n = _n()
    media = media or make_media(session, org)
    title = kw.pop("title", f"Content {n}")
    return _save(
        session,
        m.Content(
            organization_id=org.id,
            media_item_id=media.id,
            title=title,
            slug=kw.pop("slug", f"content-{n}"),
            description=kw.pop("description", "A description long enough."),
            price_cents=price_cents,
            status=status,
            published_at=kw.pop(
                "published_at", datetime.now(UTC) if status == m.ContentStatus.published else None
            ),
            **kw,
        ),
    )


def make_purchase(
    session: Any,
    customer: m.User,
    content: m.Content,
    status: m.PurchaseStatus = m.PurchaseStatus.completed,
    **kw: Any,
) -> m.ContentPurchase:
    completed = status == m.PurchaseStatus.completed
    price = kw.pop("price_paid_cents", content.price_cents)
    return _save(
        session,
        m.ContentPurchase(
            customer_id=customer.id,
            content_id=content.id,
            organization_id=content.organization_id,
            price_paid_cents=price,
            currency=kw.pop("currency", content.currency or "usd"),
            status=status,
            purchased_at=kw.pop("purchased_at", datetime.now(UTC) if completed else None),
            stripe_payment_intent_id=kw.pop(
                "stripe_payment_intent_id",
                f"pi_test_{uuid.uuid4().hex[:16]}" if completed and price > 0 else None,
            ),
            **kw,
        ),
    )
