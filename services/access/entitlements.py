"""Who may watch what: access checks, the customer's library, playback progress, complimentary grants.

Access is a `completed` purchase with `refunded_at IS NULL` (DESIGN.md). The session-level functions
(`has_access`, `user_library`, `save_playback_progress`, `get_playback_progress`) are what a web app
imports; the caller owns the transaction. The `*_for` / `grant_access` entry points serve the CLI.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from services.core.audit import record_audit
from services.core.errors import Conflict, NotFound, ValidationError
from services.core.lookup import resolve_content, resolve_operator, resolve_user
from services.core.masking import mask_email
from services.core.models import (
    Category,
    Content,
    ContentPurchase,
    MediaItem,
    PurchaseStatus,
    VideoPlayback,
)

if TYPE_CHECKING:
    from services.bootstrap import Container

COMPLETION_THRESHOLD = 0.95  # more than 95% watched counts as finished (the roadmap's rule)

# Literal (not bound) so that the planner can match the partial index ix_content_purchases_access,
# whose predicate is `status = 'completed' AND refunded_at IS NULL`, even on a generic prepared plan.
_COMPLETED: Any = literal_column("'completed'")


def _grants_access() -> Any:
    return and_(ContentPurchase.status == _COMPLETED, ContentPurchase.refunded_at.is_(None))


# ------------------------------------------------------------------------------ the shared service


@dataclass(frozen=True)
class LibraryItem:
    """One purchased title in a customer's library, with where they stopped watching."""

    purchase_id: uuid.UUID
    purchased_at: datetime | None
    price_paid_cents: int
    currency: str
    content_id: uuid.UUID
    organization_id: uuid.UUID
    title: str
    slug: str
    description: str
    content_status: str
    thumbnail_r2_key: str | None
    media_item_id: uuid.UUID
    media_type: str
    duration_seconds: int | None
    category_slug: str | None
    category_name: str | None
    position_seconds: int
    completed: bool


@dataclass(frozen=True)
class PlaybackProgress:
    user_id: uuid.UUID
    media_item_id: uuid.UUID
    position_seconds: int
    duration_seconds: int
    completed: bool
    last_watched_at: datetime | None


def has_access(session: Any, user_id: uuid.UUID, content_id: uuid.UUID) -> bool:
    """True when the user holds a completed, unrefunded purchase of the content."""
    query = select(
        exists().where(
            ContentPurchase.customer_id == user_id,
            ContentPurchase.content_id == content_id,
            _grants_access(),
        )
    )
    return bool(session.scalar(query))


def user_library(session: Any, user_id: uuid.UUID) -> list[LibraryItem]:
    """The user's purchased content, newest purchase first, refunded purchases left out; one query."""
    query = (
        select(
            ContentPurchase.id,
            ContentPurchase.purchased_at,
            ContentPurchase.price_paid_cents,
            ContentPurchase.currency,
            Content.id,
            Content.organization_id,
            Content.title,
            Content.slug,
            Content.description,
            Content.status,
            Content.thumbnail_r2_key,
            MediaItem.id,
            MediaItem.type,
            MediaItem.duration_seconds,
            Category.slug,
            Category.name,
            func.coalesce(VideoPlayback.position_seconds, 0),
            func.coalesce(VideoPlayback.completed, False),
        )
        .join(Content, Content.id == ContentPurchase.content_id)
        .join(MediaItem, MediaItem.id == Content.media_item_id)
        .outerjoin(Category, Category.id == Content.category_id)
        .outerjoin(
            VideoPlayback,
            and_(
                VideoPlayback.user_id == ContentPurchase.customer_id,
                VideoPlayback.media_item_id == MediaItem.id,
            ),
        )
        .where(ContentPurchase.customer_id == user_id, _grants_access())
        .order_by(
            ContentPurchase.purchased_at.desc().nulls_last(),
            ContentPurchase.created_at.desc(),
            ContentPurchase.id.desc(),
        )
    )
    return [
        LibraryItem(
            purchase_id=row[0],
            purchased_at=row[1],
            price_paid_cents=row[2],
            currency=row[3],
            content_id=row[4],
            organization_id=row[5],
            title=row[6],
            slug=row[7],
            description=row[8],
            content_status=str(row[9]),
            thumbnail_r2_key=row[10],
            media_item_id=row[11],
            media_type=str(row[12]),
            duration_seconds=row[13],
            category_slug=row[14],
            category_name=row[15],
            position_seconds=int(row[16]),
            completed=bool(row[17]),
        )
        for row in session.execute(query)
    ]


def save_playback_progress(
    session: Any,
    user_id: uuid.UUID,
    media_item_id: uuid.UUID,
    position_seconds: float,
    duration_seconds: float,
) -> PlaybackProgress:
    """Record where the user is in a media item (one row per user and item, updated in place).

    `completed` is set when more than 95% is watched; a duration of 0 (not known yet) never completes.
    The caller commits.
    """
    if position_seconds < 0 or duration_seconds < 0:
        raise ValidationError("Playback position and duration must be zero or more seconds.")
    completed = duration_seconds > 0 and position_seconds / duration_seconds > COMPLETION_THRESHOLD
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "position_seconds": int(position_seconds),
        "duration_seconds": int(duration_seconds),
        "completed": completed,
        "last_watched_at": now,
    }
    upsert = insert(VideoPlayback).values(user_id=user_id, media_item_id=media_item_id, **values)
    statement = upsert.on_conflict_do_update(
        index_elements=[VideoPlayback.user_id, VideoPlayback.media_item_id],
        set_={**values, "updated_at": now},
    ).returning(VideoPlayback.last_watched_at)
    try:
        with session.begin_nested():
            watched_at = session.scalar(statement)
    except IntegrityError as exc:
        if "foreign key" in str(exc.orig).lower():
            raise NotFound(f"User {user_id} or media item {media_item_id} not found.") from None
        raise
    return PlaybackProgress(
        user_id=user_id,
        media_item_id=media_item_id,
        position_seconds=values["position_seconds"],
        duration_seconds=values["duration_seconds"],
        completed=completed,
        last_watched_at=watched_at,
    )


def get_playback_progress(session: Any, user_id: uuid.UUID, media_item_id: uuid.UUID) -> PlaybackProgress:
    """Where the user stopped; position 0 and not completed when they never started."""
    row = session.scalars(
        select(VideoPlayback).where(
            VideoPlayback.user_id == user_id, VideoPlayback.media_item_id == media_item_id
        )
    ).first()
    if row is None:
        return PlaybackProgress(user_id, media_item_id, 0, 0, False, None)
    return PlaybackProgress(
        user_id=user_id,
        media_item_id=media_item_id,
        position_seconds=row.position_seconds,
        duration_seconds=row.duration_seconds,
        completed=row.completed,
        last_watched_at=row.last_watched_at,
    )


# ----------------------------------------------------------------------------- operator entry points


def shown_email(email: str, typed: str | None) -> str:
    """The full address only when the operator typed it themselves; masked everywhere else."""
    if typed and typed.strip().lower() == (email or "").lower():
        return email
    return mask_email(email)


def purchase_state(purchase: ContentPurchase) -> str:
    """`refunded` for a refunded purchase, else its status."""
    return "refunded" if purchase.refunded_at is not None else PurchaseStatus(purchase.status).value


def _content(session: Any, content_ref: str, org_ref: str | None = None, lock: bool = False) -> Content:
    content = resolve_content(session, content_ref, org_ref)
    if lock:
        session.refresh(content, with_for_update=True)
        if content.deleted_at is not None:
            raise NotFound(f"Content {content_ref.strip()} not found.")
    return content


@dataclass(frozen=True)
class AccessCheck:
    """The answer of `codex access check`, with the reason when there is no access."""

    has_access: bool
    user: str
    user_id: uuid.UUID
    content_id: uuid.UUID
    title: str
    purchase_id: uuid.UUID | None
    purchased_at: datetime | None
    reason: str


def check_access_for(
    container: Container, user_ref: str, content_ref: str, org_ref: str | None = None
) -> AccessCheck:
    """Does this user (email or id) have access to this content, and why (not)?"""
    with container.uow() as uow:
        session = uow.session
        user = resolve_user(session, user_ref)
        content = _content(session, content_ref, org_ref)
        granted = has_access(session, user.id, content.id)
        latest = session.scalars(
            select(ContentPurchase)
            .where(ContentPurchase.customer_id == user.id, ContentPurchase.content_id == content.id)
            .order_by(_grants_access().desc(), ContentPurchase.created_at.desc())
            .limit(1)
        ).first()
        if granted and latest is not None:
            kind = "complimentary grant" if latest.price_paid_cents == 0 else "purchase"
            reason = f"{kind} {latest.id}"
        elif latest is None:
            reason = "no purchase"
        elif latest.refunded_at is not None:
            reason = f"purchase {latest.id} was refunded on {latest.refunded_at:%Y-%m-%d}"
        else:
            reason = f"purchase {latest.id} is {purchase_state(latest)}"
        return AccessCheck(
            has_access=granted,
            user=shown_email(user.email, user_ref),
            user_id=user.id,
            content_id=content.id,
            title=content.title,
            purchase_id=latest.id if latest is not None else None,
            purchased_at=latest.purchased_at if granted and latest is not None else None,
            reason=reason,
        )


@dataclass(frozen=True)
class Library:
    user: str
    user_id: uuid.UUID
    items: list[LibraryItem]


def library_for(container: Container, user_ref: str) -> Library:
    """The library of a user named by email or id."""
    with container.uow() as uow:
        user = resolve_user(uow.session, user_ref)
        return Library(
            user=shown_email(user.email, user_ref), user_id=user.id, items=user_library(uow.session, user.id)
        )


@dataclass(frozen=True)
class Grant:
    purchase_id: uuid.UUID
    user: str
    user_id: uuid.UUID
    content_id: uuid.UUID
    title: str
    reason: str
    granted_by: str
    purchased_at: datetime


def grant_access(
    container: Container,
    user_ref: str,
    content_ref: str,
    reason: str,
    by: str | None = None,
    org_ref: str | None = None,
) -> Grant:
    """Give a user free access: a zero-price completed purchase, audited, in one transaction.

    Refused (Conflict) while the user holds a live purchase (completed and not refunded, or pending).
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason for the grant (it goes to the audit log).", field="reason")
    with container.uow() as uow:
        session = uow.session
        operator = resolve_operator(session, container.settings.operator_email(by))
        user = resolve_user(session, user_ref)
        # Lock the content row so a concurrent delete or a second grant waits for this one.
        content = _content(session, content_ref, org_ref, lock=True)
        live = session.scalars(
            select(ContentPurchase).where(
                ContentPurchase.customer_id == user.id,
                ContentPurchase.content_id == content.id,
                ContentPurchase.status.in_([PurchaseStatus.pending, PurchaseStatus.completed]),
                ContentPurchase.refunded_at.is_(None),
            )
        ).first()
        if live is not None:
            what = (
                "already has access through" if live.status == PurchaseStatus.completed else "has a pending"
            )
            who = shown_email(user.email, user_ref)
            raise Conflict(f"{who} {what} purchase {live.id} of this content; nothing granted.")
        now = datetime.now(UTC)
        purchase = ContentPurchase(
            customer_id=user.id,
            content_id=content.id,
            organization_id=content.organization_id,
            price_paid_cents=0,
            currency=content.currency,
            status=PurchaseStatus.completed,
            purchased_at=now,
        )
        session.add(purchase)
        try:
            session.flush()
        except IntegrityError as exc:
            if "uq_content_purchases_live" not in str(exc.orig):
                raise
            raise Conflict(
                "Another purchase of this content by this user was recorded just now; nothing granted."
            ) from None
        record_audit(
            session,
            operator,
            "access.grant",
            "content_purchase",
            purchase.id,
            {"customer_id": str(user.id), "content_id": str(content.id), "reason": reason},
        )
        uow.commit()
        return Grant(
            purchase_id=purchase.id,
            user=shown_email(user.email, user_ref),
            user_id=user.id,
            content_id=content.id,
            title=content.title,
            reason=reason,
            granted_by=operator.email,
            purchased_at=now,
        )
