"""SQLAlchemy 2.0 models for the whole schema: the roadmap's 17 tables plus stripe_events and audit_log.

Rules the database enforces itself (see DESIGN.md): case-insensitive unique email via `lower(email)`,
one live purchase per customer and content, content slugs unique per organization among live rows,
money as non-negative integer cents, an index on every foreign key, explicit ON DELETE everywhere.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.core.patterns import EMAIL_PATTERN, SLUG_PATTERN

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UserRole(enum.StrEnum):
    customer = "customer"
    platform_owner = "platform_owner"


class MemberRole(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    creator = "creator"
    member = "member"


class InvitationStatus(enum.StrEnum):
    pending = "pending"
    accepted = "accepted"
    revoked = "revoked"
    expired = "expired"


class MediaType(enum.StrEnum):
    video = "video"
    audio = "audio"


class MediaStatus(enum.StrEnum):
    uploaded = "uploaded"
    transcoding = "transcoding"
    ready = "ready"
    failed = "failed"


class ContentStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class PurchaseStatus(enum.StrEnum):
    pending = "pending"
    completed = "completed"
    failed = "failed"


class StripeEventStatus(enum.StrEnum):
    received = "received"
    processed = "processed"
    ignored = "ignored"
    failed = "failed"
    # Can never apply (e.g. its purchaseId is not a UUID): kept for a person, answered 2xx, not retried.
    failed_permanently = "failed_permanently"


class OutboxStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    dead = "dead"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


def _fk(target: str, ondelete: str, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(UUID(as_uuid=True), ForeignKey(target, ondelete=ondelete), nullable=nullable)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class User(Timestamps, Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(Text, nullable=False)
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    name: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[UserRole] = mapped_column(
        _enum(UserRole, "user_role"), nullable=False, server_default=UserRole.customer.value
    )
    image: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint(f"email ~* '{EMAIL_PATTERN}'", name="email_format"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )


class Session(Timestamps, Base):
    __tablename__ = "sessions"
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _fk("users.id", "CASCADE")
    token: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    ip_address: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index(None, "user_id"),)


class VerificationToken(Timestamps, Base):
    __tablename__ = "verification_tokens"
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _fk("users.id", "CASCADE")
    token: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    __table_args__ = (Index(None, "user_id"),)


class Organization(Timestamps, Base):
    __tablename__ = "organizations"
    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    logo_url: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="slug_format"),)


class OrganizationMember(Timestamps, Base):
    __tablename__ = "organization_members"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "CASCADE")
    user_id: Mapped[uuid.UUID] = _fk("users.id", "CASCADE")
    role: Mapped[MemberRole] = mapped_column(
        _enum(MemberRole, "org_member_role"), nullable=False, server_default=MemberRole.member.value
    )
    __table_args__ = (UniqueConstraint("organization_id", "user_id"), Index(None, "user_id"))


class OrganizationInvitation(Timestamps, Base):
    __tablename__ = "organization_invitations"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "CASCADE")
    email: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[MemberRole] = mapped_column(
        _enum(MemberRole, "org_member_role"), nullable=False, server_default=MemberRole.member.value
    )
    token: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    status: Mapped[InvitationStatus] = mapped_column(
        _enum(InvitationStatus, "invitation_status"),
        nullable=False,
        server_default=InvitationStatus.pending.value,
    )
    invited_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index(None, "organization_id"), Index(None, "invited_by"))


class Category(Timestamps, Base):
    __tablename__ = "categories"
    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class Tag(Timestamps, Base):
    __tablename__ = "tags"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "CASCADE")
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (UniqueConstraint("organization_id", "slug"),)


class MediaItem(Timestamps, Base):
    __tablename__ = "media_items"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "RESTRICT")
    uploaded_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    type: Mapped[MediaType] = mapped_column(_enum(MediaType, "media_type"), nullable=False)
    status: Mapped[MediaStatus] = mapped_column(
        _enum(MediaStatus, "media_status"), nullable=False, server_default=MediaStatus.uploaded.value
    )
    r2_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    mime_type: Mapped[str] = mapped_column(Text, nullable=False)
    file_size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("file_size_bytes >= 0", name="file_size_non_negative"),
        Index(None, "organization_id"),
        Index(None, "uploaded_by"),
        Index("ix_media_items_status_created_at", "status", "created_at"),
    )


class Content(Timestamps, Base):
    __tablename__ = "content"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "RESTRICT")
    media_item_id: Mapped[uuid.UUID] = _fk("media_items.id", "RESTRICT")
    category_id: Mapped[uuid.UUID | None] = _fk("categories.id", "SET NULL", nullable=True)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'usd'"))
    status: Mapped[ContentStatus] = mapped_column(
        _enum(ContentStatus, "content_status"), nullable=False, server_default=ContentStatus.draft.value
    )
    thumbnail_r2_key: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_non_negative"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_format"),
        Index(
            "uq_content_org_slug_live",
            "organization_id",
            "slug",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(None, "organization_id"),
        Index(None, "media_item_id"),
        Index(None, "category_id"),
    )


class ContentTag(Base):
    __tablename__ = "content_tags"
    content_id: Mapped[uuid.UUID] = _fk("content.id", "CASCADE")
    tag_id: Mapped[uuid.UUID] = _fk("tags.id", "CASCADE")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    __table_args__ = (PrimaryKeyConstraint("content_id", "tag_id"), Index(None, "tag_id"))


class Resource(Timestamps, Base):
    __tablename__ = "resources"
    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "RESTRICT")
    uploaded_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    r2_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    mime_type: Mapped[str] = mapped_column(Text, nullable=False)
    file_size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("file_size_bytes >= 0", name="file_size_non_negative"),
        Index(None, "organization_id"),
        Index(None, "uploaded_by"),
    )


class ContentResource(Base):
    __tablename__ = "content_resources"
    content_id: Mapped[uuid.UUID] = _fk("content.id", "CASCADE")
    resource_id: Mapped[uuid.UUID] = _fk("resources.id", "CASCADE")
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    __table_args__ = (PrimaryKeyConstraint("content_id", "resource_id"), Index(None, "resource_id"))


LIVE_PURCHASE = "status IN ('pending', 'completed') AND refunded_at IS NULL"
ACCESS_PURCHASE = "status = 'completed' AND refunded_at IS NULL"


class ContentPurchase(Timestamps, Base):
    __tablename__ = "content_purchases"
    id: Mapped[uuid.UUID] = _uuid_pk()
    customer_id: Mapped[uuid.UUID] = _fk("users.id", "RESTRICT")
    content_id: Mapped[uuid.UUID] = _fk("content.id", "RESTRICT")
    organization_id: Mapped[uuid.UUID] = _fk("organizations.id", "RESTRICT")
    price_paid_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'usd'"))
    status: Mapped[PurchaseStatus] = mapped_column(
        _enum(PurchaseStatus, "purchase_status"), nullable=False, server_default=PurchaseStatus.pending.value
    )
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(Text, unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(Text)
    amount_received_cents: Mapped[int | None] = mapped_column(Integer)
    purchased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refund_reason: Mapped[str | None] = mapped_column(Text)
    stripe_refund_id: Mapped[str | None] = mapped_column(Text)
    refunded_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    __table_args__ = (
        CheckConstraint("price_paid_cents >= 0", name="price_paid_non_negative"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_format"),
        Index(
            "uq_content_purchases_live",
            "customer_id",
            "content_id",
            unique=True,
            postgresql_where=text(LIVE_PURCHASE),
        ),
        Index(
            "ix_content_purchases_access",
            "customer_id",
            "content_id",
            postgresql_where=text(ACCESS_PURCHASE),
        ),
        Index(None, "customer_id"),
        Index(None, "content_id"),
        Index(None, "organization_id"),
        Index(None, "refunded_by"),
        Index(None, "stripe_payment_intent_id"),
        Index("ix_content_purchases_status_created_at", "status", "created_at"),
    )


class VideoPlayback(Timestamps, Base):
    __tablename__ = "video_playback"
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = _fk("users.id", "CASCADE")
    media_item_id: Mapped[uuid.UUID] = _fk("media_items.id", "CASCADE")
    position_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    duration_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    completed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    last_watched_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    __table_args__ = (
        UniqueConstraint("user_id", "media_item_id"),
        CheckConstraint("position_seconds >= 0 AND duration_seconds >= 0", name="positions_non_negative"),
        Index(None, "media_item_id"),
    )


class PlatformSetting(Timestamps, Base):
    __tablename__ = "platform_settings"
    id: Mapped[uuid.UUID] = _uuid_pk()
    key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    updated_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    __table_args__ = (Index(None, "updated_by"),)


class EmailTemplate(Timestamps, Base):
    __tablename__ = "email_templates"
    id: Mapped[uuid.UUID] = _uuid_pk()
    key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    html_body: Mapped[str] = mapped_column(Text, nullable=False)
    text_body: Mapped[str] = mapped_column(Text, nullable=False)
    updated_by: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    __table_args__ = (Index(None, "updated_by"),)


class StripeEvent(Timestamps, Base):
    __tablename__ = "stripe_events"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[Any] = mapped_column(JSONB, nullable=False)
    status: Mapped[StripeEventStatus] = mapped_column(
        _enum(StripeEventStatus, "stripe_event_status"),
        nullable=False,
        server_default=StripeEventStatus.received.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        Index(None, "status"),
        Index(None, "type"),
        Index(None, "received_at"),
    )


class StripeRefund(Timestamps, Base):
    """Refunds seen in Stripe's events and listings, per payment intent, whether or not the purchase is
    known yet: a refund that arrives before its purchase's completion is applied when it completes, and
    partial refunds add up. `id` is the refund id (`re_...`), or the charge id (`ch_...`) for the
    cumulative `amount_refunded` a `charge.refunded` event carries (which names no refund)."""

    __tablename__ = "stripe_refunds"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # refund | charge
    payment_intent_id: Mapped[str] = mapped_column(Text, nullable=False)
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    fully_refunded: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    status: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index(None, "payment_intent_id"),)


class EmailOutbox(Timestamps, Base):
    """One email caused by a state change, queued in the change's own transaction (services.email.outbox)."""

    __tablename__ = "email_outbox"
    id: Mapped[uuid.UUID] = _uuid_pk()
    template: Mapped[str] = mapped_column(Text, nullable=False)
    recipient: Mapped[str] = mapped_column(Text, nullable=False)
    variables: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    reply_to: Mapped[str | None] = mapped_column(Text)
    # Stable per cause (`purchase-receipt-<purchase id>`): queued twice is one row, sent twice is one
    # email (Resend's Idempotency-Key).
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "email_outbox_status"), nullable=False, server_default=OutboxStatus.pending.value
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        # What a drainer claims: pending messages that are due, oldest first.
        Index(
            "ix_email_outbox_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(None, "status"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )


class AuditLog(Timestamps, Base):
    __tablename__ = "audit_log"
    id: Mapped[uuid.UUID] = _uuid_pk()
    actor_id: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    target_type: Mapped[str | None] = mapped_column(Text)
    target_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    __table_args__ = (
        Index(None, "actor_id"),
        Index(None, "at"),
        Index(None, "action"),
    )


class MediaJob(Timestamps, Base):
    """One processing job of a media item (issue #20): queued -> running -> done | failed. Workers
    claim with FOR UPDATE SKIP LOCKED; `lease_expires_at` + `claim_token` keep a job on one worker."""

    __tablename__ = "media_jobs"
    id: Mapped[uuid.UUID] = _uuid_pk()
    media_item_id: Mapped[uuid.UUID] = _fk("media_items.id", "CASCADE")
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'queued'"))
    force: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status_known"),
        Index(None, "media_item_id"),
        Index("ix_media_jobs_status_created_at", "status", "created_at"),
        # One open job per item: enqueueing twice is a no-op (ON CONFLICT DO NOTHING).
        Index(
            "uq_media_jobs_open_media_item_id",
            "media_item_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )
